package httpcache

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// Tee prepares resp, the answer to the GET req, for storing under principal. If Storable says resp may
// be stored (and it is not announced bigger than the entry limit), Tee replaces resp.Body with a reader
// that passes every Read through and keeps a copy of the bytes the caller reads; when the caller reaches
// io.EOF, the entry is stored. It also stores the entry when the caller closes the body after reading
// exactly Content-Length bytes, since the body is then complete (json.Decoder, for one, stops before
// EOF). The copy is dropped, and nothing stored, once it grows past the entry limit, when a Read fails
// with another error, when fewer or more bytes than Content-Length arrive, when the body is closed before
// it is complete, or when the URL is invalidated while the body is read. Tee never reads ahead of the
// caller. Any other response is returned unchanged. It returns resp, and is safe for concurrent use.
func (c *Cache) Tee(principal string, req *http.Request, resp *http.Response) *http.Response {
	if !c.enabled() || resp == nil || resp.Body == nil || !cacheableRequest(req) || !Storable(req, resp) ||
		resp.ContentLength > c.maxEntryBytes {
		return resp
	}
	key := urlKey(req.URL)
	header := storedHeader(resp.Header)
	names, _ := varyNames(header)
	values := varyValues(names, req.Header, c.secretNames) // so that the request's credentials are not kept
	gen := c.generation()
	t := &teeBody{
		rc:    resp.Body,
		want:  resp.ContentLength,
		limit: c.maxEntryBytes,
		state: teeCopying,
		cache: c,
		store: func(body []byte) {
			c.store(c.newEntry(principal, key, header, body, names, values), gen)
		},
	}
	if t.want > 0 {
		// Known length: reserve it all now, so that a body the pool cannot hold is not copied at all.
		if !c.reserve(t.want) {
			return resp
		}
		t.reserved = t.want
		t.buf = make([]byte, 0, t.want)
	}
	resp.Body = t
	return resp
}

// CopyBytes returns the memory held by the copies of bodies that are being read (see Tee): at most the
// cache's maxBytes, on top of Bytes. It is safe for concurrent use.
func (c *Cache) CopyBytes() int64 {
	if c == nil {
		return 0
	}
	return c.copying.Load()
}

// CopiesRefused returns how many storable answers Tee passed on without copying, or stopped copying,
// because the copies in flight already held the cache's maxBytes. It is safe for concurrent use.
func (c *Cache) CopiesRefused() uint64 {
	if c == nil {
		return 0
	}
	return c.refused.Load()
}

// reserve takes n bytes from the pool of copy memory, or reports that it is full (counted).
func (c *Cache) reserve(n int64) bool {
	if c.copying.Add(n) > c.maxBytes {
		c.copying.Add(-n)
		c.refused.Add(1)
		return false
	}
	return true
}

// teeState is the state of the copy a teeBody keeps.
type teeState int

const (
	teeCopying   teeState = iota // bytes read are being copied
	teeStored                    // the body was complete and has been handed to the cache
	teeAbandoned                 // the copy was dropped; nothing will be stored
)

// teeBody is the body Tee installs. Read and Close may be called from different goroutines, as the body
// of a net/http response allows.
type teeBody struct {
	rc    io.ReadCloser
	want  int64             // Content-Length, or -1 when unknown
	limit int64             // the most bytes the copy may hold
	store func(body []byte) // called at most once, with the complete body

	closeOnce sync.Once
	closeErr  error // set inside closeOnce

	cache *Cache // whose pool of copy memory buf is counted in

	mu       sync.Mutex // guards buf, state and reserved
	buf      []byte
	state    teeState
	reserved int64 // bytes of the cache's copy pool held for buf: cap(buf)
}

// Read reads from the response body and copies what it got.
func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != teeCopying {
		return n, err
	}
	if n > 0 {
		if int64(len(t.buf))+int64(n) > t.limit || !t.growLocked(n) {
			t.abandonLocked()
			return n, err
		}
		t.buf = append(t.buf, p[:n]...)
	}
	switch {
	case err == io.EOF:
		t.finishLocked()
	case err != nil:
		t.abandonLocked()
	}
	return n, err
}

// Close closes the response body. A body that is not complete yet is not stored. Calling Close again
// returns the first call's result.
func (t *teeBody) Close() error {
	t.mu.Lock()
	if t.state == teeCopying {
		if t.want >= 0 && int64(len(t.buf)) == t.want {
			t.finishLocked()
		} else {
			t.abandonLocked()
		}
	}
	t.mu.Unlock()
	t.closeOnce.Do(func() { t.closeErr = t.rc.Close() })
	return t.closeErr
}

// finishLocked stores the copy if it is as long as the response said it would be.
func (t *teeBody) finishLocked() {
	if t.want >= 0 && int64(len(t.buf)) != t.want {
		t.abandonLocked()
		return
	}
	body := t.buf
	if body == nil {
		body = []byte{}
	}
	t.buf, t.state = nil, teeStored
	t.releaseLocked() // the stored entry counts in the cache's bytes from now on
	t.store(body)
}

func (t *teeBody) abandonLocked() {
	t.buf, t.state = nil, teeAbandoned
	t.releaseLocked()
}

// growLocked makes room in buf for n more bytes (the caller checked the entry limit), reserving the
// larger buffer in the cache's copy pool before allocating it; it reports false when the pool cannot
// give it.
func (t *teeBody) growLocked(n int) bool {
	need := int64(len(t.buf) + n)
	if need <= int64(cap(t.buf)) {
		return true
	}
	size := min(max(2*int64(cap(t.buf)), need, 4<<10), max(t.limit, need))
	if !t.cache.reserve(size - t.reserved) {
		return false
	}
	grown := make([]byte, len(t.buf), size)
	copy(grown, t.buf)
	t.buf, t.reserved = grown, size
	return true
}

func (t *teeBody) releaseLocked() {
	t.cache.copying.Add(-t.reserved)
	t.reserved = 0
}

// newBodyReader returns a response body that reads body; closing it does nothing.
func newBodyReader(body []byte) io.ReadCloser {
	if len(body) == 0 {
		return http.NoBody
	}
	return io.NopCloser(bytes.NewReader(body))
}

// closeBody drains what is left of a (normally empty) 304 body, up to a small limit so that the
// connection can be reused, and closes it.
func closeBody(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	_ = body.Close()
}
