package actors

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/resilientclient/resilient/internal/httpx"
)

// The headers each hop may carry: the engine's credentials on the API's origins only, and none of
// the caller's past the origin a redirect chain started at.

// prepare is req bound to ctx with body, and with the headers this hop may carry: on a hop to an
// API origin the engine's token (auth, unless empty) and secret headers; on a redirect hop that left
// the first request's origin, none of the caller's credentials (Authorization, Proxy-Authorization,
// the configured secret header names, and the cookies the first request carried; a cookie jar's
// other cookies for the hop stay); on a hop back at the first origin, the caller's Authorization and
// the like again. net/http copies credentials to any redirect within the same domain, whatever the
// port or scheme; here they stay at their exact origin. The caller's request is not modified: a new
// header map is made when anything changes, or when own asks for one (its value slices are shared,
// read-only).
func (r *Requester) prepare(req *http.Request, ctx context.Context, body io.ReadCloser, auth []string, own bool) *http.Request {
	r2 := req.WithContext(ctx)
	r2.Body = body
	api := len(auth) > 0 || (len(r.Secrets) > 0 && r.forAPI(req.URL))
	var first *http.Request // the request that started a redirect chain, when this is a later hop
	crossed := false
	if req.Response != nil {
		first = firstOfChain(req)
		crossed = originOf(first.URL) != originOf(req.URL)
	}
	if !api && first == nil && !own {
		return r2
	}
	h := make(http.Header, len(req.Header)+1+len(r.Secrets))
	for k, v := range req.Header {
		if api && r.replaced(k, len(auth) > 0) {
			continue
		}
		if crossed && r.credential(k) {
			if !strings.EqualFold(k, "Cookie") {
				continue // Authorization and the like never go past the first origin
			}
			// Drop every cookie the first request carried, by name (net/http copies them within a
			// domain, whatever the port or scheme, and may re-quote them); keep the others, which
			// the client's cookie jar chose for this hop.
			if v = cookiesNotIn(first.Header, v); len(v) == 0 {
				continue
			}
		}
		h[k] = v
	}
	if first != nil && !crossed {
		// Back at the first origin: the caller's Authorization (and the like) were meant for it, and
		// net/http stops sending them for the rest of a chain once it visited another host. Cookies
		// are not restored: the jar, if any, speaks for them, and a cookie a server deleted on the
		// way must not come back.
		for k, v := range first.Header {
			if r.credential(k) && !strings.EqualFold(k, "Cookie") && !hasKey(h, k) && !(api && r.replaced(k, len(auth) > 0)) {
				h[k] = v
			}
		}
	}
	if len(auth) > 0 {
		h["Authorization"] = auth
	}
	if api {
		for _, s := range r.Secrets {
			h[s.Name] = []string{s.Value}
		}
	}
	r2.Header = h
	return r2
}

// replaced reports whether the engine sets the header named k itself on an API hop (Authorization
// when it attaches a token, and the secret headers), so the caller's value, in any spelling, goes.
func (r *Requester) replaced(k string, token bool) bool {
	if token && strings.EqualFold(k, "Authorization") {
		return true
	}
	for _, s := range r.Secrets {
		if strings.EqualFold(k, s.Name) {
			return true
		}
	}
	return false
}

// credential reports whether the header named k carries the caller's credentials: one of the
// shared list (httpx), or a configured secret header.
func (r *Requester) credential(k string) bool {
	if httpx.IsCredential(k) {
		return true
	}
	for _, s := range r.Secrets {
		if strings.EqualFold(k, s.Name) {
			return true
		}
	}
	return false
}

// cookiesNotIn is the Cookie header values vals without the cookies whose names appear in first's
// Cookie header (in any spelling of its key).
func cookiesNotIn(first http.Header, vals []string) []string {
	names := map[string]bool{}
	for k, fv := range first {
		if strings.EqualFold(k, "Cookie") {
			for _, v := range fv {
				for _, pair := range strings.Split(v, ";") {
					names[cookieName(pair)] = true
				}
			}
		}
	}
	if len(names) == 0 {
		return vals
	}
	var kept []string
	for _, v := range vals {
		var own []string
		for _, pair := range strings.Split(v, ";") {
			if name := cookieName(pair); name != "" && !names[name] {
				own = append(own, strings.TrimSpace(pair))
			}
		}
		if len(own) > 0 {
			kept = append(kept, strings.Join(own, "; "))
		}
	}
	return kept
}

// cookieName is the name of one name=value pair of a Cookie header.
func cookieName(pair string) string {
	name, _, _ := strings.Cut(pair, "=")
	return strings.TrimSpace(name)
}

// hasKey reports whether h has the header named k, in any spelling.
func hasKey(h http.Header, k string) bool {
	for hk := range h {
		if strings.EqualFold(hk, k) {
			return true
		}
	}
	return false
}

// firstOfChain is the request that started the redirect chain req belongs to.
func firstOfChain(req *http.Request) *http.Request {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first
}

// SecretHeader is a header the engine attaches to requests for the API's origins only, such as an
// API key. Its value is never logged.
type SecretHeader struct {
	Name  string // canonical form
	Value string
}
