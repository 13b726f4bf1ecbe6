package actors

import (
	"context"
	"net/http"

	"github.com/resilientclient/resilient/internal/httpcache"
)

// Caching is the request path's ETag cache: GET answers with a validator are kept per principal (a
// keyed hash of every credential header each request carried, never the credentials), sent back as
// If-None-Match / If-Modified-Since, and a 304 is answered with the stored 200. It is safe for
// concurrent use.
type Caching struct {
	Store *httpcache.Cache
}

// NewCaching returns a cache that holds at most maxBytes, each entry at most an eighth of it, and
// counts the headers of secrets (the engine's WithSecretHeader names) as credentials besides the
// built-in list, so that requests carrying different values of them never share an entry.
func NewCaching(maxBytes int64, secrets []SecretHeader) *Caching {
	names := make([]string, len(secrets))
	for i, s := range secrets {
		names[i] = s.Name
	}
	return &Caching{Store: httpcache.New(maxBytes, maxBytes/8, names...)}
}

// exchange makes one send of req (already carrying its credentials) through the cache: a GET with a
// stored answer goes out conditional and a 304 comes back as the stored 200; a storable 200 is
// copied into the cache as the caller reads it; a write invalidates what is stored for its URL.
func (r *Requester) exchange(ctx context.Context, req *http.Request, st *attemptState) (*http.Response, error) {
	c := r.Cache
	if c == nil {
		return r.send(ctx, req, st)
	}
	switch req.Method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		// RFC 9111 §4.4: a write makes what is stored for its URL stale, whatever it answers.
		resp, err := r.send(ctx, req, st)
		c.Store.Invalidate(req.URL)
		return resp, err
	default:
		return r.send(ctx, req, st)
	}
	who := identity{store: c.Store, header: req.Header}
	if !c.Store.Empty() {
		if e := c.Store.Lookup(who.principal(), req); e != nil {
			plain := req
			req = withOwnHeader(req)
			httpcache.Conditional(req.Header, e)
			resp, err := r.send(ctx, req, st)
			if err != nil || resp.StatusCode != http.StatusNotModified {
				return keep(&who, req, resp, err)
			}
			out := c.Store.Revalidated(who.principal(), req, resp, e)
			if out.StatusCode != http.StatusNotModified {
				return out, nil
			}
			// The 304 named another representation than the stored one: ask again, unconditionally.
			discard(out)
			body, err := rewind(plain)
			if err != nil {
				return nil, err
			}
			plain.Body = body
			req = plain
		}
	}
	resp, err := r.send(ctx, req, st)
	return keep(&who, req, resp, err)
}

// identity is who one send speaks for, as the cache partitions it: its principal (Cache.Identify of
// the headers it went out with, credentials attached) is derived at most once, when the lookup or the
// store first needs it, so a GET whose answer is neither looked up nor stored never pays for it. The
// validators added to a conditional send carry no credentials and do not change it.
type identity struct {
	store  *httpcache.Cache
	header http.Header
	known  bool
	value  string
}

func (id *identity) principal() string {
	if !id.known {
		id.value, id.known = id.store.Identify(id.header), true
	}
	return id.value
}

// keep hands a storable 200 to the cache, which copies its body as the caller reads it.
func keep(who *identity, req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	if err != nil || resp.StatusCode != http.StatusOK || !httpcache.Storable(req, resp) {
		return resp, err
	}
	return who.store.Tee(who.principal(), req, resp), nil
}

// withOwnHeader is a shallow copy of req with a header map of its own, to add validators to.
func withOwnHeader(req *http.Request) *http.Request {
	r2 := *req
	r2.Header = req.Header.Clone()
	return &r2
}
