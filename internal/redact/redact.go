// Package redact prints values that may carry secrets in a form safe for errors, logs and spans.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// URL prints u without user info or fragment and with every query value replaced by "redacted",
// so secrets passed in URLs (api_key=…, token=…, signatures) reach no error, log record or span.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.RawFragment == "" {
		return u.String()
	}
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// Clip shortens s to at most n bytes plus "…", cutting at a rune boundary so the result stays valid
// UTF-8 when s was (OpenTelemetry exporters drop a whole batch over one invalid string). Invalid
// bytes in s are replaced with U+FFFD first. n ≤ 0 gives "…" for any non-empty s.
func Clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	if n < 0 {
		n = 0
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// MinSecret is the length, in bytes, below which Secrets leaves a value alone. Replacing every "r"
// or "abc" in a message would garble it ("invalid_grant" with a refresh token "r" would read
// "invalid_g[redacted]ant") and hide nothing: so short a value is no secret worth the name.
const MinSecret = 8

// Redacted is what Secrets puts in place of a secret.
const Redacted = "[redacted]"

// Secrets replaces every occurrence of each whole secret value in s with Redacted, in each form a
// server may echo it in: as it is, URL-encoded (query and path escaping, upper- or lower-case hex),
// and JSON-escaped (with and without HTML escaping, and with "/" as "\/"). A form-encoded body sent
// back (refresh_token=rt%2F…) or a JSON document quoting the value is scrubbed like the raw text.
// For an HTTP Basic value, add BasicCredentials(id, secret) to the secrets. Only whole values are
// replaced, never a piece of one, and values shorter than MinSecret are skipped. Longer forms are
// replaced first, so that a secret that contains another (an Authorization value and its token)
// goes at once. Redact before clipping: a clip may cut a secret into a prefix that no longer
// matches.
func Secrets(s string, secrets ...string) string {
	if s == "" {
		return s
	}
	forms := make([]string, 0, len(secrets))
	for _, secret := range secrets {
		if len(secret) >= MinSecret {
			forms = appendForms(forms, secret)
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, Redacted)
	}
	return s
}

// appendForms appends secret and each distinct encoded form of it to dst.
func appendForms(dst []string, secret string) []string {
	add := func(f string) {
		if !slices.Contains(dst, f) {
			dst = append(dst, f)
		}
	}
	add(secret)
	for _, f := range [...]string{url.QueryEscape(secret), url.PathEscape(secret)} {
		add(f)
		add(lowerHex(f))
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, html := range [...]bool{true, false} {
		b.Reset()
		enc.SetEscapeHTML(html)
		if enc.Encode(secret) == nil {
			q := strings.TrimSuffix(b.String(), "\n")
			q = q[1 : len(q)-1] // without its quotes
			add(q)
			add(strings.ReplaceAll(q, "/", `\/`))
		}
	}
	return dst
}

// lowerHex is a percent-encoded s with its hex digits in lower case (rt%2f), as some servers encode.
func lowerHex(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for j := i + 1; j <= i+2; j++ {
				if b[j] >= 'A' && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
			i += 2
		}
	}
	return string(b)
}

// BasicCredentials are the values an HTTP Basic Authorization header carries for id and secret
// (base64 of id:secret, with and without the RFC 6749 §2.3.1 form-encoding of both): a server that
// echoes the header puts these in its answer, where Secrets does not know the secret's id.
func BasicCredentials(id, secret string) []string {
	if secret == "" {
		return nil
	}
	raw := base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
	enc := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	if raw == enc {
		return []string{raw}
	}
	return []string{enc, raw}
}
