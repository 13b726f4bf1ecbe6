package httpcache

import (
	"net/http"
	"slices"
	"strings"

	"github.com/resilientclient/resilient/internal/httpx"
)

// directive is one Cache-Control directive: a lower-case name and its value, unquoted, or "".
type directive struct {
	name, value string
}

// parseCacheControl splits Cache-Control values into directives (RFC 9111 §5.2). Names are compared
// case-insensitively, so they are returned in lower case; values may be tokens or quoted strings, and a
// quoted value may hold commas and backslash escapes. Empty list elements are skipped; an unterminated
// quoted value runs to the end of its header value.
func parseCacheControl(values []string) []directive {
	var out []directive
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			end := strings.IndexAny(v, "=,")
			if end < 0 {
				end = len(v)
			}
			d := directive{name: strings.ToLower(trimOWS(v[:end]))}
			v = v[end:]
			if v != "" && v[0] == '=' {
				d.value, v = directiveValue(trimLeftOWS(v[1:]))
			}
			if d.name != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// directiveValue reads a token or quoted-string value from the start of s and returns it together with
// what follows it.
func directiveValue(s string) (value, rest string) {
	if s == "" || s[0] != '"' {
		end := strings.IndexByte(s, ',')
		if end < 0 {
			end = len(s)
		}
		return trimOWS(s[:end]), s[end:]
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			rest = s[i+1:]
			if end := strings.IndexByte(rest, ','); end >= 0 {
				rest = rest[end:] // anything between the closing quote and the comma is junk
			} else {
				rest = ""
			}
			return b.String(), rest
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), ""
}

func trimLeftOWS(s string) string { return strings.TrimLeft(s, " \t") }

// hasDirective reports whether the Cache-Control header of h carries the directive name (lower case).
func hasDirective(h http.Header, name string) bool {
	for _, d := range parseCacheControl(headerValues(h, "Cache-Control")) {
		if d.name == name {
			return true
		}
	}
	return false
}

// varyNames returns the canonical, de-duplicated header names listed by the Vary header of h, and
// whether it says "*" (the response varies on something outside the request).
func varyNames(h http.Header) (names []string, star bool) {
	for _, v := range headerValues(h, "Vary") {
		for _, name := range strings.Split(v, ",") {
			name = trimOWS(name)
			switch {
			case name == "":
			case name == "*":
				star = true
			default:
				name = http.CanonicalHeaderKey(name)
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
	}
	return names, star
}

// varyValues returns the request's value for each of the Vary names, several values joined with ", ".
// An absent header and an empty one give the same "". Credential headers (see Principal) give "" too:
// the principal already separates them, and their raw values must not be kept.
func varyValues(names []string, h http.Header, secretNames []string) []string {
	if len(names) == 0 {
		return nil
	}
	values := make([]string, len(names))
	for i, name := range names {
		if !httpx.IsCredential(name, secretNames...) {
			values[i] = strings.Join(headerValues(h, name), ", ")
		}
	}
	return values
}

// headerValues returns every value of the header name in h, matching the name case-insensitively:
// http.Header.Values finds only the canonical key, but net/http sends non-canonical keys as they are,
// so a server sees them too. Values under several spellings come in sorted key order.
func headerValues(h http.Header, name string) []string {
	values := h[name]
	var extra []string
	for k := range h {
		if len(k) == len(name) && k != name && strings.EqualFold(k, name) {
			extra = append(extra, k)
		}
	}
	if len(extra) == 0 {
		return values
	}
	slices.Sort(extra)
	values = slices.Clone(values)
	for _, k := range extra {
		values = append(values, h[k]...)
	}
	return values
}

// isGet reports whether req is a GET; net/http reads an empty Method as GET.
func isGet(req *http.Request) bool {
	return req.Method == "" || req.Method == http.MethodGet
}

// responseValidators returns the response's entity-tag and Last-Modified date, each "" when absent or
// malformed: a validator the server could not parse back would only cost a round trip.
func responseValidators(h http.Header) (etag, lastModified string) {
	// Canonical keys only (net/http writes response headers so): a validator spelled otherwise only
	// means the answer is not kept. This runs for every 200 GET, so it must not walk the header.
	if values := h["Etag"]; len(values) == 1 {
		etag, _ = validETag(values[0])
	}
	if values := h["Last-Modified"]; len(values) == 1 {
		if _, err := http.ParseTime(values[0]); err == nil {
			lastModified = values[0]
		}
	}
	return etag, lastModified
}

// Storable reports whether resp, the answer to req, may be stored: the method is GET, the status 200,
// the response has a well-formed ETag or Last-Modified, neither the request nor the response says
// Cache-Control: no-store, the response has no Vary: * and does not vary on Proxy-Authorization, and it
// sets no cookie. Cache-Control: private and no-cache are fine: entries are always kept per principal
// and always revalidated before use. A request whose Host field overrides its URL's host is not stored
// either, because Invalidate, which only sees a URL, could not find it. Storable is a pure function,
// safe for concurrent use.
func Storable(req *http.Request, resp *http.Response) bool {
	if req == nil || resp == nil || req.URL == nil || !isGet(req) || resp.StatusCode != http.StatusOK {
		return false
	}
	if etag, lastModified := responseValidators(resp.Header); etag == "" && lastModified == "" {
		return false // most answers: nothing to revalidate with, so nothing more to look at
	}
	if req.Host != "" && !strings.EqualFold(req.Host, req.URL.Host) {
		return false
	}
	if hasDirective(resp.Header, "no-store") || hasDirective(req.Header, "no-store") {
		return false
	}
	names, star := varyNames(resp.Header)
	if star || slices.Contains(names, "Proxy-Authorization") {
		return false
	}
	return len(headerValues(resp.Header, "Set-Cookie")) == 0
}

// preconditionHeaders are the request headers that make a request conditional (RFC 9110 §13.1) or
// partial (Range). A request carrying one is the caller's own business: the cache neither adds a
// validator to it nor answers it.
var preconditionHeaders = [...]string{
	"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range",
}

func hasPrecondition(h http.Header) bool {
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		for _, name := range preconditionHeaders {
			if len(k) == len(name) && strings.EqualFold(k, name) {
				return true
			}
		}
	}
	return false
}

// Conditional sets If-None-Match on h to the entry's ETag, or If-Modified-Since to its Last-Modified when
// it has no ETag, unless h already carries a precondition or a Range of its own (which it leaves alone).
// A nil e does nothing. It changes only h, so it is safe for concurrent use with different headers.
func Conditional(h http.Header, e *Entry) {
	if e == nil || hasPrecondition(h) {
		return
	}
	switch {
	case e.ETag != "":
		h.Set("If-None-Match", e.ETag)
	case e.LastModified != "":
		h.Set("If-Modified-Since", e.LastModified)
	}
}

// unstoredHeaders are never stored. The hop-by-hop ones (RFC 9111 §3.1) describe one connection or one
// proxy, not the resource; Set-Cookie and X-Cache belong to the one response that carried them.
var unstoredHeaders = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authentication-Info", "Set-Cookie", HeaderCache,
}

// keptHeaders are stored but never replaced by a 304's headers (RFC 9111 §3.2): Content-Length must not
// be; Content-Encoding and Content-Range describe the bytes the cache holds, which net/http may already
// have decoded.
var keptHeaders = [...]string{"Content-Length", "Content-Encoding", "Content-Range"}

// storedHeader returns a copy of h without the headers that are not stored: unstoredHeaders and the
// ones the Connection header names.
func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, v := range headerValues(h, "Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = trimOWS(name); name != "" {
				deleteFold(out, name)
			}
		}
	}
	for _, name := range unstoredHeaders {
		deleteFold(out, name)
	}
	return out
}

// updatedHeader returns the stored headers updated with the headers of a 304 as RFC 9111 §3.2 and
// §4.3.4 say: each field of the 304 replaces the stored one, except hop-by-hop fields, Set-Cookie, and
// the fields that describe the stored bytes (Content-Length, Content-Encoding, Content-Range).
func updatedHeader(stored, notModified http.Header) http.Header {
	out := stored.Clone()
	if out == nil {
		out = http.Header{}
	}
	for name, values := range storedHeader(notModified) {
		canonical := http.CanonicalHeaderKey(name)
		if slices.Contains(keptHeaders[:], canonical) {
			continue
		}
		deleteFold(out, canonical)
		out[canonical] = slices.Clone(values)
	}
	return out
}

// deleteFold removes every spelling of the header name from h.
func deleteFold(h http.Header, name string) {
	for k := range h {
		if strings.EqualFold(k, name) {
			delete(h, k)
		}
	}
}

// headerSize is the number of bytes h takes on the wire, near enough: names, values and separators.
func headerSize(h http.Header) int64 {
	var n int64
	for k, values := range h {
		for _, v := range values {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}
