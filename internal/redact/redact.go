// Package redact prints values that may carry secrets in a form safe for errors, logs and spans.
package redact

import (
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

// Secrets replaces every occurrence of each whole secret value in s with Redacted. Only whole values
// are replaced, never a piece of one, and values shorter than MinSecret are skipped. Longer secrets
// are replaced first, so that a secret that contains another (an Authorization value and its
// token) goes at once. Redact before clipping: a clip may cut a secret into a prefix that no longer
// matches.
func Secrets(s string, secrets ...string) string {
	if s == "" {
		return s
	}
	if len(secrets) > 1 {
		secrets = slices.Clone(secrets)
		slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	}
	for _, secret := range secrets {
		if len(secret) >= MinSecret {
			s = strings.ReplaceAll(s, secret, Redacted)
		}
	}
	return s
}
