package httpcache

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cachingTransport shows how the engine is meant to use the package: Lookup, Conditional on a clone,
// the round trip, then Revalidated for a 304 or Tee for anything else; writes invalidate their URL.
type cachingTransport struct {
	base  http.RoundTripper
	cache *Cache
}

func (tr *cachingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != "" && req.Method != http.MethodGet {
		resp, err := tr.base.RoundTrip(req)
		tr.cache.Invalidate(req.URL) // whatever the outcome: the write may have happened
		return resp, err
	}
	principal := tr.cache.Identify(req.Header)
	e := tr.cache.Lookup(principal, req)
	if e == nil {
		resp, err := tr.base.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		return tr.cache.Tee(principal, req, resp), nil
	}
	conditional := req.Clone(req.Context()) // a RoundTripper must not change the caller's request
	Conditional(conditional.Header, e)
	resp, err := tr.base.RoundTrip(conditional)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusNotModified {
		return tr.cache.Tee(principal, req, resp), nil
	}
	if out := tr.cache.Revalidated(principal, req, resp, e); out.StatusCode == http.StatusOK {
		return out, nil
	}
	// The 304 did not confirm the entry (and the cache dropped it): ask again without a validator.
	closeBody(resp.Body)
	resp, err = tr.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	return tr.cache.Tee(principal, req, resp), nil
}

// origin is a test server on 127.0.0.1 that records the requests it gets.
type origin struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request // clones without bodies, in order
}

func newOrigin(t *testing.T, handler http.HandlerFunc) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Clone(r.Context()))
		o.mu.Unlock()
		handler(w, r)
	}))
	require.True(t, strings.HasPrefix(o.URL, "http://127.0.0.1:"), o.URL)
	t.Cleanup(o.Close)
	return o
}

// request returns the headers of the n-th request the origin got, counting from 1.
func (o *origin) request(n int) http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n > len(o.seen) {
		return nil
	}
	return o.seen[n-1].Header
}

func (o *origin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

func newClient(t *testing.T, c *Cache) *http.Client {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: &cachingTransport{base: base, cache: c}, Timeout: 10 * time.Second}
}

type result struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, client *http.Client, method, rawURL string, h http.Header) result {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return result{resp.StatusCode, string(body), resp.Header}
}

// representation is what a conditional-aware handler serves for one request.
type representation struct {
	body, etag, lastModified string
	header                   http.Header // sent with the 200 and with the 304
	status                   int         // 0 means 200
}

// serveConditional answers 304 when the request's If-None-Match (or, without one, If-Modified-Since)
// matches rep, and rep in full otherwise.
func serveConditional(w http.ResponseWriter, r *http.Request, rep representation) {
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	if rep.etag != "" {
		w.Header().Set("ETag", rep.etag)
	}
	if rep.lastModified != "" {
		w.Header().Set("Last-Modified", rep.lastModified)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		tags, ok := ParseETagList(inm)
		for _, tag := range tags {
			if ok && (tag == "*" || WeakMatch(tag, rep.etag)) {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	} else if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && rep.lastModified != "" {
		if lm, err := http.ParseTime(rep.lastModified); err == nil && !lm.After(ims) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if rep.status != 0 {
		w.WriteHeader(rep.status)
	}
	_, _ = io.WriteString(w, rep.body)
}

const lastModified = "Tue, 14 Nov 2023 22:13:20 GMT"

func TestEndToEndRevalidation(t *testing.T) {
	for _, tc := range []struct {
		name               string
		etag, lastModified string
		wantINM, wantIMS   string
	}{
		{"ETag", `"v1"`, "", `"v1"`, ""},
		{"weak ETag", `W/"v1"`, "", `W/"v1"`, ""},
		{"Last-Modified only", "", lastModified, "", lastModified},
		{"ETag and Last-Modified", `"v1"`, lastModified, `"v1"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				age := fmt.Sprintf("private, max-age=%d", n)
				mu.Unlock()
				serveConditional(w, r, representation{body: "the document", etag: tc.etag, lastModified: tc.lastModified,
					header: http.Header{"Cache-Control": {age}, "Content-Type": {"text/plain"}}})
			})
			c := New(1<<20, 0)
			client := newClient(t, c)

			first := do(t, client, http.MethodGet, o.URL+"/doc?x=1", nil)
			assert.Equal(t, http.StatusOK, first.status)
			assert.Equal(t, "the document", first.body)
			assert.Empty(t, first.header.Get(HeaderCache))
			require.Equal(t, 1, c.Len())
			assert.Empty(t, o.request(1).Get("If-None-Match"))

			for i := 2; i <= 3; i++ {
				got := do(t, client, http.MethodGet, o.URL+"/doc?x=1", nil)
				assert.Equal(t, http.StatusOK, got.status)
				assert.Equal(t, "the document", got.body)
				assert.Equal(t, ValueRevalidated, got.header.Get(HeaderCache))
				assert.Equal(t, fmt.Sprintf("private, max-age=%d", i), got.header.Get("Cache-Control"), "updated from the 304")
				assert.Equal(t, "text/plain", got.header.Get("Content-Type"))
				assert.Equal(t, "12", got.header.Get("Content-Length"))
				assert.Equal(t, tc.wantINM, o.request(i).Get("If-None-Match"))
				assert.Equal(t, tc.wantIMS, o.request(i).Get("If-Modified-Since"))
			}
			assert.Equal(t, 1, c.Len())

			other := do(t, client, http.MethodGet, o.URL+"/doc?x=2", nil)
			assert.Empty(t, other.header.Get(HeaderCache), "another query is another resource")
			assert.Empty(t, o.request(4).Get("If-None-Match"))
			assert.Empty(t, o.request(4).Get("If-Modified-Since"))
		})
	}
}

func TestEndToEndPrincipals(t *testing.T) {
	for _, tc := range []struct {
		name string
		vary http.Header
	}{
		{"Vary: Authorization", http.Header{"Vary": {"Authorization, Cookie, X-Api-Key, X-Tenant"}}},
		{"no Vary", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A careless server: the same ETag for everyone, and a 304 for anyone who sends it.
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				who := r.Header.Get("Authorization") + r.Header.Get("Cookie") + r.Header.Get("X-Api-Key") +
					r.Header.Get("X-Tenant")
				serveConditional(w, r, representation{body: "data of " + who, etag: `"same"`, header: tc.vary})
			})
			c := New(1<<20, 0, "X-Tenant")
			client := newClient(t, c)
			users := []struct {
				header http.Header
				body   string
			}{
				{http.Header{"Authorization": {"Bearer alice"}}, "data of Bearer alice"},
				{http.Header{"Authorization": {"Bearer bob"}}, "data of Bearer bob"},
				{http.Header{"Cookie": {"session=carol"}}, "data of session=carol"},
				{http.Header{"X-Api-Key": {"dave"}}, "data of dave"},
				{http.Header{"x-api-key": {"erin"}}, "data of erin"},
				{http.Header{"X-Tenant": {"frank"}}, "data of frank"}, // a secret header name given to New
				{nil, "data of "},
			}
			n := 0
			for round := range 3 {
				for _, u := range users {
					got := do(t, client, http.MethodGet, o.URL+"/me", u.header)
					n++
					assert.Equal(t, u.body, got.body, "round %d", round)
					if round == 0 {
						assert.Empty(t, o.request(n).Get("If-None-Match"), "first request of %q is not conditional", u.body)
						assert.Empty(t, got.header.Get(HeaderCache))
					} else {
						assert.Equal(t, `"same"`, o.request(n).Get("If-None-Match"))
						assert.Equal(t, ValueRevalidated, got.header.Get(HeaderCache))
					}
				}
			}
			assert.Equal(t, len(users), c.Len())
		})
	}
}

func TestEndToEndVaryVariants(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		lang := r.Header.Get("Accept-Language")
		serveConditional(w, r, representation{body: "doc in " + lang, etag: `"` + lang + `-1"`,
			header: http.Header{"Vary": {"Accept-Language"}}})
	})
	c := New(1<<20, 0)
	client := newClient(t, c)
	langs := []string{"en", "fr", "en", "fr", "de"}
	for i, lang := range langs {
		got := do(t, client, http.MethodGet, o.URL+"/doc", http.Header{"Accept-Language": {lang}})
		assert.Equal(t, "doc in "+lang, got.body)
		if i == 2 || i == 3 {
			assert.Equal(t, `"`+lang+`-1"`, o.request(i+1).Get("If-None-Match"))
			assert.Equal(t, ValueRevalidated, got.header.Get(HeaderCache))
		} else {
			assert.Empty(t, o.request(i+1).Get("If-None-Match"))
		}
	}
	assert.Equal(t, 3, c.Len())
}

func TestEndToEndNotStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		req    http.Header
		rep    representation
	}{
		{"response no-store", "GET", nil, representation{etag: `"1"`, header: http.Header{"Cache-Control": {"private, no-store"}}}},
		{"request no-store", "GET", http.Header{"Cache-Control": {"no-store"}}, representation{etag: `"1"`}},
		{"Vary: *", "GET", nil, representation{etag: `"1"`, header: http.Header{"Vary": {"*"}}}},
		{"Set-Cookie", "GET", nil, representation{etag: `"1"`, header: http.Header{"Set-Cookie": {"s=1"}}}},
		{"404", "GET", nil, representation{etag: `"1"`, status: http.StatusNotFound}},
		{"201", "GET", nil, representation{etag: `"1"`, status: http.StatusCreated}},
		{"no validator", "GET", nil, representation{}},
		{"POST", "POST", nil, representation{etag: `"1"`}},
		{"HEAD", "HEAD", nil, representation{etag: `"1"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rep.body = "body"
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { serveConditional(w, r, tc.rep) })
			c := New(1<<20, 0)
			client := newClient(t, c)
			for i := 1; i <= 2; i++ {
				got := do(t, client, tc.method, o.URL+"/doc", tc.req)
				assert.Empty(t, got.header.Get(HeaderCache))
				assert.Empty(t, o.request(i).Get("If-None-Match"))
				assert.Zero(t, c.Len())
			}
		})
	}
}

func TestEndToEndInvalidateAfterWrite(t *testing.T) {
	for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		t.Run(method, func(t *testing.T) {
			var mu sync.Mutex
			version := 1
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if r.Method != http.MethodGet {
					version++
					w.WriteHeader(http.StatusNoContent)
					return
				}
				// Last-Modified only, with one-second resolution: a write in the same second would
				// otherwise be answered with a 304 for the old body.
				serveConditional(w, r, representation{body: fmt.Sprintf("%s v%d", r.URL.Path, version),
					lastModified: lastModified, header: http.Header{"Vary": {"Accept-Language"}}})
			})
			c := New(1<<20, 0)
			client := newClient(t, c)
			alice := http.Header{"Authorization": {"Bearer alice"}}
			bob := http.Header{"Authorization": {"Bearer bob"}}
			for _, h := range []http.Header{alice, bob} {
				for _, lang := range []string{"en", "fr"} {
					h := h.Clone()
					h.Set("Accept-Language", lang)
					do(t, client, http.MethodGet, o.URL+"/doc", h)
				}
			}
			do(t, client, http.MethodGet, o.URL+"/other", alice)
			require.Equal(t, 5, c.Len())

			do(t, client, method, o.URL+"/doc", alice)
			assert.Equal(t, 1, c.Len(), "every variant of /doc for every principal is gone")

			got := do(t, client, http.MethodGet, o.URL+"/doc", alice)
			assert.Equal(t, "/doc v2", got.body)
			assert.Empty(t, o.request(o.count()).Get("If-Modified-Since"))
			other := do(t, client, http.MethodGet, o.URL+"/other", alice)
			assert.Equal(t, ValueRevalidated, other.header.Get(HeaderCache), "other URLs stay")
		})
	}
}

func TestEndToEndTruncatedBody(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"1"`)
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only ten b")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drops the connection
	})
	c := New(1<<20, 0)
	client := newClient(t, c)
	resp, err := client.Get(o.URL + "/doc")
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.NoError(t, resp.Body.Close())
	assert.Zero(t, c.Len())
}

func TestEndToEndStreaming(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"1"`)
		_, _ = io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second")
	})
	c := New(1<<20, 0)
	client := newClient(t, c)
	resp, err := client.Get(o.URL + "/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err, "the first part arrives while the server still holds the rest")
	assert.Equal(t, "first;", string(first))
	assert.Zero(t, c.Len())
	once.Do(func() { close(release) })
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "second", string(rest))
	assert.Equal(t, 1, c.Len())
}

func TestEndToEndCloseBeforeEOF(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		serveConditional(w, r, representation{body: strings.Repeat("x", 64<<10), etag: `"1"`})
	})
	c := New(1<<20, 0)
	client := newClient(t, c)
	resp, err := client.Get(o.URL + "/big")
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Body, make([]byte, 1000))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, resp.Body.Close(), "closing twice is harmless")
	assert.Zero(t, c.Len())
}

func TestEndToEndMismatched304(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		if n == 2 { // a confused server: a 304 naming another representation
			w.Header().Set("ETag", `"v2"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		serveConditional(w, r, representation{body: fmt.Sprintf("body %d", n), etag: fmt.Sprintf(`"v%d"`, n)})
	})
	c := New(1<<20, 0)
	client := newClient(t, c)
	assert.Equal(t, "body 1", do(t, client, http.MethodGet, o.URL+"/doc", nil).body)
	got := do(t, client, http.MethodGet, o.URL+"/doc", nil)
	assert.Equal(t, "body 3", got.body, "the stored body is not served for another representation")
	assert.Empty(t, got.header.Get(HeaderCache))
	assert.Equal(t, `"v1"`, o.request(2).Get("If-None-Match"))
	assert.Empty(t, o.request(3).Get("If-None-Match"))
}

func TestEndToEndTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c := New(1<<20, 0)
	client := newClient(t, c)
	_, err = client.Get("http://" + addr + "/doc")
	var opErr *net.OpError
	assert.True(t, errors.As(err, &opErr), "%v", err)
	assert.Zero(t, c.Len())
}
