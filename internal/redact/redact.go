// Package redact prints values that may carry secrets in a form safe for errors, logs and spans.
package redact

import (
	"net/url"
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
