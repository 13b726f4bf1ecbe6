// Package redact prints values that may carry secrets in a form safe for errors, logs and spans.
package redact

import "net/url"

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
