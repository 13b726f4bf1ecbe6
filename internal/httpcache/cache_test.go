package httpcache

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const docURL = "https://api.example/doc?page=1"

// exchange builds a GET to rawURL and a 200 answer to it, as a RoundTripper would see them.
func exchange(t testing.TB, rawURL string, reqHeader, respHeader http.Header, body string) (*http.Request, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	for k, v := range reqHeader {
		req.Header[k] = v
	}
	if respHeader == nil {
		respHeader = http.Header{}
	}
	return req, &http.Response{
		StatusCode:    http.StatusOK,
		Header:        respHeader,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// fill stores resp through Tee by reading its body to the end, as a caller would.
func fill(t testing.TB, c *Cache, principal string, req *http.Request, resp *http.Response) {
	t.Helper()
	resp = c.Tee(principal, req, resp)
	_, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
}

func etag(v string) http.Header { return http.Header{"Etag": {`"` + v + `"`}} }

// notModified builds a 304 answer to req with the given headers.
func notModified(req *http.Request, h http.Header) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: http.StatusNotModified, Status: "304 Not Modified", Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: http.NoBody, Request: req}
}

// checkInvariants compares the cache's bookkeeping with its contents.
func checkInvariants(t testing.TB, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	n := 0
	for elem := c.lru.Front(); elem != nil; elem = elem.Next() {
		e := elem.Value.(*Entry)
		sum += e.Size
		require.Same(t, elem, c.elems[e.id])
		require.Contains(t, c.byURL[e.urlKey][e.principal], e)
		n++
	}
	indexed := 0
	for _, byPrincipal := range c.byURL {
		require.NotEmpty(t, byPrincipal)
		for _, variants := range byPrincipal {
			require.NotEmpty(t, variants)
			indexed += len(variants)
		}
	}
	assert.Equal(t, sum, c.bytes)
	assert.LessOrEqual(t, c.bytes, c.maxBytes)
	assert.Equal(t, n, len(c.elems))
	assert.Equal(t, n, indexed)
}

func TestDisabledCache(t *testing.T) {
	for name, c := range map[string]*Cache{"nil": nil, "zero bytes": New(0, 0), "negative": New(-1, 10)} {
		t.Run(name, func(t *testing.T) {
			req, resp := exchange(t, docURL, nil, etag("1"), "body")
			body := resp.Body
			assert.Same(t, resp, c.Tee("p", req, resp))
			assert.Equal(t, body, resp.Body, "the body is not wrapped")
			_, _ = io.ReadAll(resp.Body)
			assert.Nil(t, c.Lookup("p", req))
			assert.Zero(t, c.Len())
			assert.Zero(t, c.Bytes())
			c.Invalidate(req.URL)
			nm := notModified(req, nil)
			assert.Same(t, nm, c.Revalidated("p", req, nm, nil))
		})
	}
}

func TestNewLimits(t *testing.T) {
	assert.Equal(t, int64(100), New(800, 0).maxEntryBytes)
	assert.Equal(t, int64(100), New(800, -5).maxEntryBytes)
	assert.Equal(t, int64(800), New(800, 5000).maxEntryBytes)
	assert.Equal(t, int64(10), New(800, 10).maxEntryBytes)
}

func TestLookupKey(t *testing.T) {
	c := New(1<<20, 0)
	req, resp := exchange(t, docURL, nil, etag("1"), "alice's doc")
	fill(t, c, "alice", req, resp)
	require.Equal(t, 1, c.Len())

	get := func(rawURL string, h http.Header) *http.Request {
		r, _ := exchange(t, rawURL, h, nil, "")
		return r
	}
	for _, tc := range []struct {
		name      string
		principal string
		req       *http.Request
		found     bool
	}{
		{"same principal and URL", "alice", get(docURL, nil), true},
		{"URL spelled differently", "alice", get("https://API.example:443/doc?page=1", nil), true},
		{"other principal", "bob", get(docURL, nil), false},
		{"anonymous", "", get(docURL, nil), false},
		{"other query", "alice", get("https://api.example/doc?page=2", nil), false},
		{"no query", "alice", get("https://api.example/doc", nil), false},
		{"other scheme", "alice", get("http://api.example/doc?page=1", nil), false},
		{"other host", "alice", get("https://api2.example/doc?page=1", nil), false},
		{"caller's own If-None-Match", "alice", get(docURL, http.Header{"If-None-Match": {`"x"`}}), false},
		{"Range", "alice", get(docURL, http.Header{"Range": {"bytes=0-1"}}), false},
		{"POST", "alice", func() *http.Request { r := get(docURL, nil); r.Method = http.MethodPost; return r }(), false},
		{"Host override", "alice", func() *http.Request { r := get(docURL, nil); r.Host = "evil.example"; return r }(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := c.Lookup(tc.principal, tc.req)
			if !tc.found {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, "alice's doc", string(e.Body))
			assert.Equal(t, `"1"`, e.ETag)
			assert.Equal(t, http.StatusOK, e.Status)
		})
	}
	assert.Nil(t, c.Lookup("alice", nil))
}

func TestLookupReturnsACopy(t *testing.T) {
	c := New(1<<20, 0)
	req, resp := exchange(t, docURL, nil, http.Header{"Etag": {`"1"`}, "X-A": {"a"}}, "doc")
	fill(t, c, "p", req, resp)
	e := c.Lookup("p", req)
	require.NotNil(t, e)
	e.Header.Set("X-A", "changed")
	e.ETag = "changed"
	again := c.Lookup("p", req)
	require.NotNil(t, again)
	assert.Equal(t, "a", again.Header.Get("X-A"))
	assert.Equal(t, `"1"`, again.ETag)
}

func TestVaryVariants(t *testing.T) {
	c := New(1<<20, 0)
	vary := func(tag string) http.Header { return http.Header{"Etag": {tag}, "Vary": {"accept-language, Accept"}} }
	for _, lang := range []string{"en", "fr"} {
		req, resp := exchange(t, docURL, http.Header{"Accept-Language": {lang}, "Accept": {"a/b", "c/d"}},
			vary(`"`+lang+`"`), "doc in "+lang)
		fill(t, c, "p", req, resp)
	}
	require.Equal(t, 2, c.Len(), "variants coexist")

	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"en", http.Header{"Accept-Language": {"en"}, "Accept": {"a/b", "c/d"}}, "doc in en"},
		{"fr", http.Header{"Accept-Language": {"fr"}, "Accept": {"a/b, c/d"}}, "doc in fr"},
		{"de", http.Header{"Accept-Language": {"de"}, "Accept": {"a/b", "c/d"}}, ""},
		{"no Accept-Language", http.Header{"Accept": {"a/b", "c/d"}}, ""},
		{"other Accept", http.Header{"Accept-Language": {"en"}, "Accept": {"a/b"}}, ""},
		{"non-canonical request header", http.Header{"accept-language": {"en"}, "Accept": {"a/b", "c/d"}}, "doc in en"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := exchange(t, docURL, tc.h, nil, "")
			e := c.Lookup("p", req)
			if tc.want == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, tc.want, string(e.Body))
			assert.Equal(t, []string{"Accept-Language", "Accept"}, e.Vary)
		})
	}

	req, resp := exchange(t, docURL, http.Header{"Accept-Language": {"en"}, "Accept": {"a/b", "c/d"}}, vary(`"en2"`), "new en")
	fill(t, c, "p", req, resp)
	assert.Equal(t, 2, c.Len(), "a new response replaces the variant with the same Vary values")
	e := c.Lookup("p", req)
	require.NotNil(t, e)
	assert.Equal(t, "new en", string(e.Body))
	checkInvariants(t, c)
}

func TestVaryOnCredentialsKeepsNoSecret(t *testing.T) {
	c := New(1<<20, 0, "X-Tenant")
	h := http.Header{"Authorization": {"Bearer top-secret"}, "Cookie": {"session=hush"},
		"X-Api-Key": {"key-quiet"}, "X-Tenant": {"tenant-mum"}}
	req, resp := exchange(t, docURL, h, http.Header{"Etag": {`"1"`}, "Vary": {"Authorization, Cookie, X-Api-Key, X-Tenant"}}, "doc")
	principal := c.Identify(req.Header)
	fill(t, c, principal, req, resp)
	e := c.Lookup(principal, req)
	require.NotNil(t, e)
	assert.Equal(t, []string{"", "", "", ""}, e.VaryValues)
	c.mu.Lock()
	dump := fmt.Sprintf("%+v", c.byURL)
	c.mu.Unlock()
	for _, secret := range []string{"top-secret", "hush", "key-quiet", "tenant-mum"} {
		assert.NotContains(t, dump, secret)
	}

	for _, cred := range []string{"Authorization", "X-Api-Key", "X-Tenant"} {
		other := h.Clone()
		other[cred] = []string{"other"}
		req, _ := exchange(t, docURL, other, nil, "")
		assert.Nil(t, c.Lookup(c.Identify(req.Header), req), cred)
	}
}

func TestLRUEvictionByBytes(t *testing.T) {
	size := func() int64 {
		c := New(1<<20, 0)
		req, resp := exchange(t, "https://api.example/0", nil, etag("1"), strings.Repeat("x", 100))
		fill(t, c, "p", req, resp)
		return c.Bytes()
	}()
	require.Greater(t, size, int64(100))

	c := New(3*size, size)
	reqs := make([]*http.Request, 4)
	for i := range 3 {
		req, resp := exchange(t, fmt.Sprintf("https://api.example/%d", i), nil, etag("1"), strings.Repeat("x", 100))
		fill(t, c, "p", req, resp)
		reqs[i] = req
	}
	require.Equal(t, 3, c.Len())
	require.Equal(t, 3*size, c.Bytes())

	require.NotNil(t, c.Lookup("p", reqs[0]), "0 is now the most recently used")
	req, resp := exchange(t, "https://api.example/3", nil, etag("1"), strings.Repeat("x", 100))
	fill(t, c, "p", req, resp)
	reqs[3] = req

	assert.Equal(t, 3, c.Len())
	assert.Equal(t, 3*size, c.Bytes())
	assert.NotNil(t, c.Lookup("p", reqs[0]))
	assert.Nil(t, c.Lookup("p", reqs[1]), "1 was the least recently used")
	assert.NotNil(t, c.Lookup("p", reqs[2]))
	assert.NotNil(t, c.Lookup("p", reqs[3]))

	big, resp := exchange(t, "https://api.example/big", nil, etag("1"), strings.Repeat("x", 150))
	fill(t, c, "p", big, resp)
	assert.Nil(t, c.Lookup("p", big), "bigger than maxEntryBytes")
	assert.Equal(t, 3, c.Len(), "and it evicted nothing")
	checkInvariants(t, c)
}

func TestEntryLimit(t *testing.T) {
	const limit = 200
	for _, tc := range []struct {
		name          string
		body          int
		contentLength bool
		stored        bool
		wrapped       bool
	}{
		{"small, known length", 10, true, true, true},
		{"oversized, known length, not wrapped", limit + 1, true, false, false},
		{"oversized, unknown length, dropped while streaming", 5 * limit, false, false, true},
		{"body at the limit, headers push it over", limit, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(1<<20, limit)
			body := strings.Repeat("y", tc.body)
			req, resp := exchange(t, docURL, nil, etag("1"), body)
			if !tc.contentLength {
				resp.ContentLength = -1
			}
			orig := resp.Body
			resp = c.Tee("p", req, resp)
			assert.Equal(t, tc.wrapped, resp.Body != orig)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, body, string(got), "the caller gets every byte")
			assert.Equal(t, tc.stored, c.Lookup("p", req) != nil)
		})
	}
}

// scriptedBody is a response body that returns its chunks one Read at a time, then end (io.EOF or another
// error), and counts Close calls.
type scriptedBody struct {
	chunks   []string
	end      error
	eofWith  bool // return end together with the last chunk
	read     int
	closes   int
	closeErr error
}

func (b *scriptedBody) Read(p []byte) (int, error) {
	if len(b.chunks) == 0 {
		return 0, b.end
	}
	n := copy(p, b.chunks[0])
	b.read += n
	b.chunks[0] = b.chunks[0][n:]
	if b.chunks[0] == "" {
		b.chunks = b.chunks[1:]
	}
	if len(b.chunks) == 0 && b.eofWith {
		return n, b.end
	}
	return n, nil
}

func (b *scriptedBody) Close() error { b.closes++; return b.closeErr }

func TestTeeBody(t *testing.T) {
	errBroken := errors.New("connection reset")
	for _, tc := range []struct {
		name          string
		body          *scriptedBody
		contentLength int64
		read          func(io.Reader) error // what the caller does before Close
		stored        bool
	}{
		{"read to EOF", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF}, 5, readAll, true},
		{"EOF together with the last bytes", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF, eofWith: true}, 5, readAll, true},
		{"unknown length read to EOF", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF}, -1, readAll, true},
		{"empty body", &scriptedBody{end: io.EOF}, 0, readAll, true},
		{"closed before EOF", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF}, 5, readN(3), false},
		{"unknown length closed before EOF", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF}, -1, readN(5), false},
		{"all Content-Length bytes read, then closed", &scriptedBody{chunks: []string{"hel", "lo"}, end: io.EOF}, 5, readN(5), true},
		{"closed without reading", &scriptedBody{chunks: []string{"hello"}, end: io.EOF}, 5, readN(0), false},
		{"read error", &scriptedBody{chunks: []string{"hel", "lo"}, end: errBroken}, -1, readAll, false},
		{"read error with the last bytes", &scriptedBody{chunks: []string{"hel", "lo"}, end: errBroken, eofWith: true}, 5, readAll, false},
		{"unexpected EOF", &scriptedBody{chunks: []string{"hel"}, end: io.ErrUnexpectedEOF}, 5, readAll, false},
		{"shorter than Content-Length", &scriptedBody{chunks: []string{"hel"}, end: io.EOF}, 5, readAll, false},
		{"longer than Content-Length", &scriptedBody{chunks: []string{"hello!"}, end: io.EOF}, 5, readAll, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(1<<20, 0)
			req, resp := exchange(t, docURL, nil, etag("1"), "")
			resp.Body, resp.ContentLength = tc.body, tc.contentLength
			resp = c.Tee("p", req, resp)
			_ = tc.read(resp.Body)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 1, tc.body.closes)
			e := c.Lookup("p", req)
			if !tc.stored {
				assert.Nil(t, e)
				assert.Zero(t, c.Bytes())
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, bodyOf(tc.name), string(e.Body))
		})
	}
}

// bodyOf is the body TestTeeBody expects to be stored for a case.
func bodyOf(name string) string {
	if name == "empty body" {
		return ""
	}
	return "hello"
}

func readAll(r io.Reader) error { _, err := io.ReadAll(r); return err }

func readN(n int) func(io.Reader) error {
	return func(r io.Reader) error { _, err := io.ReadFull(r, make([]byte, n)); return err }
}

func TestTeeCloseTwice(t *testing.T) {
	c := New(1<<20, 0)
	errClose := errors.New("close failed")
	body := &scriptedBody{chunks: []string{"hello"}, end: io.EOF, closeErr: errClose}
	req, resp := exchange(t, docURL, nil, etag("1"), "")
	resp.Body, resp.ContentLength = body, 5
	resp = c.Tee("p", req, resp)
	_, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.ErrorIs(t, resp.Body.Close(), errClose)
	assert.ErrorIs(t, resp.Body.Close(), errClose)
	assert.Equal(t, 1, body.closes)
	assert.Equal(t, 1, c.Len(), "a close error after EOF does not undo the store")
	_, err = resp.Body.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, 1, c.Len())
}

func TestTeeDoesNotReadAhead(t *testing.T) {
	c := New(1<<20, 0)
	body := &scriptedBody{chunks: []string{"abcdef"}, end: io.EOF}
	req, resp := exchange(t, docURL, nil, etag("1"), "")
	resp.Body, resp.ContentLength = body, 6
	resp = c.Tee("p", req, resp)
	p := make([]byte, 2)
	n, err := resp.Body.Read(p)
	require.NoError(t, err)
	assert.Equal(t, "ab", string(p[:n]))
	assert.Equal(t, 2, body.read, "the underlying body gave no more than the caller asked for")
	assert.Zero(t, c.Len())
	require.NoError(t, resp.Body.Close())
}

func TestInvalidateWhileReading(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate []string
		stored     bool
	}{
		{"nothing invalidated", nil, true},
		{"another URL invalidated", []string{"https://api.example/other"}, true},
		{"same URL invalidated", []string{docURL}, false},
		{"same URL, spelled differently", []string{"https://API.EXAMPLE:443/doc?page=1"}, false},
		{"too many invalidations to tell", func() []string {
			var urls []string
			for i := range recentInvalidations + 1 {
				urls = append(urls, fmt.Sprintf("https://api.example/other/%d", i))
			}
			return urls
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(1<<20, 0)
			req, resp := exchange(t, docURL, nil, etag("1"), "doc")
			resp = c.Tee("p", req, resp)
			for _, u := range tc.invalidate {
				c.Invalidate(mustURL(t, u))
			}
			_, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, tc.stored, c.Lookup("p", req) != nil)
		})
	}
}

func TestInvalidate(t *testing.T) {
	c := New(1<<20, 0)
	for _, p := range []string{"alice", "bob", ""} {
		for _, lang := range []string{"en", "fr"} {
			req, resp := exchange(t, docURL, http.Header{"Accept-Language": {lang}},
				http.Header{"Etag": {`"1"`}, "Vary": {"Accept-Language"}}, "doc")
			fill(t, c, p, req, resp)
		}
	}
	other, resp := exchange(t, "https://api.example/doc?page=2", nil, etag("1"), "other")
	fill(t, c, "alice", other, resp)
	require.Equal(t, 7, c.Len())
	otherSize := c.Lookup("alice", other).Size

	c.Invalidate(mustURL(t, "https://API.example:443/doc?page=1"))
	assert.Equal(t, 1, c.Len())
	assert.Equal(t, otherSize, c.Bytes())
	assert.NotNil(t, c.Lookup("alice", other))
	checkInvariants(t, c)
	c.Invalidate(nil)
}

func TestRevalidated(t *testing.T) {
	stored := http.Header{
		"Etag":           {`"v1"`},
		"Content-Length": {"3"},
		"Content-Type":   {"text/plain"},
		"Cache-Control":  {"max-age=1"},
		"Vary":           {"Accept"},
	}
	setup := func(t *testing.T) (*Cache, *http.Request, *Entry) {
		c := New(1<<20, 0)
		base := time.Unix(1_700_000_000, 0)
		c.now = func() time.Time { return base }
		req, resp := exchange(t, docURL, http.Header{"Accept": {"text/plain"}}, stored.Clone(), "doc")
		fill(t, c, "alice", req, resp)
		e := c.Lookup("alice", req)
		require.NotNil(t, e)
		c.now = func() time.Time { return base.Add(time.Minute) }
		return c, req, e
	}

	t.Run("headers updated, body served, entry refreshed", func(t *testing.T) {
		c, req, e := setup(t)
		closed := &scriptedBody{end: io.EOF}
		nm := notModified(req, http.Header{
			"Etag":           {`W/"v1"`},
			"Cache-Control":  {"max-age=60"},
			"Date":           {"Tue, 14 Nov 2023 22:14:20 GMT"},
			"Content-Length": {"0"},
			"Set-Cookie":     {"s=2"},
			"X-Cache":        {"HIT from cdn"},
		})
		nm.Body = closed
		got := c.Revalidated("alice", req, nm, e)
		require.NotSame(t, nm, got)
		assert.Equal(t, http.StatusOK, got.StatusCode)
		assert.Equal(t, "200 OK", got.Status)
		assert.Same(t, req, got.Request)
		assert.Equal(t, int64(3), got.ContentLength)
		assert.Equal(t, ValueRevalidated, got.Header.Get(HeaderCache))
		assert.Equal(t, "max-age=60", got.Header.Get("Cache-Control"))
		assert.Equal(t, `W/"v1"`, got.Header.Get("Etag"))
		assert.Equal(t, "3", got.Header.Get("Content-Length"))
		assert.Equal(t, "text/plain", got.Header.Get("Content-Type"))
		assert.Equal(t, "s=2", got.Header.Get("Set-Cookie"), "the caller still gets the 304's cookie")
		assert.Equal(t, 1, closed.closes)
		for range 2 {
			again := c.Revalidated("alice", req, notModified(req, nil), c.Lookup("alice", req))
			b, err := io.ReadAll(again.Body)
			require.NoError(t, err)
			assert.Equal(t, "doc", string(b), "a fresh reader each time")
		}
		body, err := io.ReadAll(got.Body)
		require.NoError(t, err)
		assert.Equal(t, "doc", string(body))

		refreshed := c.Lookup("alice", req)
		require.NotNil(t, refreshed)
		assert.Equal(t, 1, c.Len())
		assert.Equal(t, "max-age=60", refreshed.Header.Get("Cache-Control"))
		assert.Equal(t, `W/"v1"`, refreshed.ETag)
		assert.Empty(t, refreshed.Header.Values("Set-Cookie"), "cookies are not stored")
		assert.Empty(t, refreshed.Header.Values(HeaderCache), "the marker is not stored")
		assert.Equal(t, e.Stored.Add(time.Minute), refreshed.Stored)
		checkInvariants(t, c)
	})

	for _, tc := range []struct {
		name      string
		principal string
		req       func(*http.Request) *http.Request
		resp      func(*http.Request) *http.Response
		removed   bool
	}{
		{"not a 304", "alice", nil, func(r *http.Request) *http.Response {
			_, resp := exchange(t, docURL, nil, etag("v2"), "new")
			return resp
		}, false},
		{"another principal's entry", "bob", nil, nil, false},
		{"anonymous", "", nil, nil, false},
		{"another URL", "alice", func(r *http.Request) *http.Request {
			o, _ := exchange(t, "https://api.example/doc?page=2", r.Header, nil, "")
			return o
		}, nil, false},
		{"another Vary value", "alice", func(r *http.Request) *http.Request {
			o, _ := exchange(t, docURL, http.Header{"Accept": {"text/html"}}, nil, "")
			return o
		}, nil, false},
		{"ETag of another representation", "alice", nil, func(r *http.Request) *http.Response {
			return notModified(r, etag("v2"))
		}, true},
		{"malformed ETag", "alice", nil, func(r *http.Request) *http.Response {
			return notModified(r, http.Header{"Etag": {"v1"}})
		}, true},
	} {
		t.Run("unchanged: "+tc.name, func(t *testing.T) {
			c, req, e := setup(t)
			if tc.req != nil {
				req = tc.req(req)
			}
			nm := notModified(req, nil)
			if tc.resp != nil {
				nm = tc.resp(req)
			}
			assert.Same(t, nm, c.Revalidated(tc.principal, req, nm, e))
			assert.Equal(t, !tc.removed, c.Len() == 1)
		})
	}

	t.Run("unchanged: nil entry or request", func(t *testing.T) {
		c, req, e := setup(t)
		nm := notModified(req, nil)
		assert.Same(t, nm, c.Revalidated("alice", req, nm, nil))
		assert.Same(t, nm, c.Revalidated("alice", nil, nm, e))
		assert.Nil(t, c.Revalidated("alice", req, nil, e))
	})

	for _, tc := range []struct {
		name   string
		header http.Header
		kept   bool
	}{
		{"no headers", nil, true},
		{"Vary: * makes it unstorable", http.Header{"Vary": {"*"}}, false},
		{"no-store makes it unstorable", http.Header{"Cache-Control": {"no-store"}}, false},
		{"Vary changed", http.Header{"Vary": {"Accept-Language"}}, true},
	} {
		t.Run("served: "+tc.name, func(t *testing.T) {
			c, req, e := setup(t)
			got := c.Revalidated("alice", req, notModified(req, tc.header), e)
			require.Equal(t, http.StatusOK, got.StatusCode)
			assert.Equal(t, tc.kept, c.Len() == 1)
			checkInvariants(t, c)
		})
	}

	t.Run("Last-Modified validators", func(t *testing.T) {
		const lm = "Mon, 02 Jan 2006 15:04:05 GMT"
		c := New(1<<20, 0)
		req, resp := exchange(t, docURL, nil, http.Header{"Last-Modified": {lm}}, "doc")
		fill(t, c, "p", req, resp)
		e := c.Lookup("p", req)
		require.NotNil(t, e)
		assert.Equal(t, http.StatusOK, c.Revalidated("p", req, notModified(req, http.Header{"Last-Modified": {lm}}), e).StatusCode)
		nm := notModified(req, http.Header{"Last-Modified": {"Tue, 03 Jan 2006 15:04:05 GMT"}})
		assert.Same(t, nm, c.Revalidated("p", req, nm, e), "a 304 for another date")
		assert.Zero(t, c.Len())
	})

	t.Run("evicted meanwhile: served, not brought back", func(t *testing.T) {
		c, req, e := setup(t)
		c.Invalidate(req.URL)
		got := c.Revalidated("alice", req, notModified(req, nil), e)
		assert.Equal(t, http.StatusOK, got.StatusCode)
		assert.Zero(t, c.Len())
	})
}

func TestConcurrentUse(t *testing.T) {
	c := New(8<<10, 1<<10)
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			principal := fmt.Sprintf("p%d", g%7)
			for i := range 50 {
				rawURL := fmt.Sprintf("https://api.example/r/%d", (g+i)%13)
				req, resp := exchange(t, rawURL, http.Header{"Accept": {fmt.Sprint(i % 3)}},
					http.Header{"Etag": {fmt.Sprintf(`"%d"`, i%2)}, "Vary": {"Accept"}}, strings.Repeat("z", (g*i)%300))
				switch i % 5 {
				case 0, 1:
					resp = c.Tee(principal, req, resp)
					if i%2 == 0 {
						_, _ = io.ReadAll(resp.Body)
					}
					_ = resp.Body.Close()
				case 2, 3:
					if e := c.Lookup(principal, req); e != nil {
						if e.principal != principal {
							t.Errorf("entry of %s returned for %s", e.principal, principal)
						}
						got := c.Revalidated(principal, req, notModified(req, http.Header{"Etag": {e.ETag}}), e)
						_, _ = io.ReadAll(got.Body)
					}
				case 4:
					if i%10 == 4 {
						c.Invalidate(req.URL)
					}
					_, _ = c.Len(), c.Bytes()
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, c)
	assert.Zero(t, c.CopyBytes(), "every body was closed, so every copy was released")
}
