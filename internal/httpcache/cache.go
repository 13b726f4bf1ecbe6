// Package httpcache keeps GET responses that carry a validator (ETag or Last-Modified) so that the next
// GET of the same URL by the same principal can be sent as a conditional request, and a 304 answer can be
// turned back into the stored 200 for the caller.
//
// Every entry belongs to a principal, a keyed hash of the credentials the request carried (see
// Principal), and to the full URL, and it remembers the request headers its Vary names: one user's
// response is never returned for another. Entries are always revalidated with the server before use;
// the package never answers a request on its own, so freshness (max-age, Expires) plays no part.
//
// The pieces are meant to be called from an http.RoundTripper in this order: Identify once, then
// Lookup, then Conditional on a clone of the request, then the round trip, then Revalidated for a 304
// or Tee for anything else; writes (POST, PUT, PATCH, DELETE) call Invalidate for their URL.
package httpcache

import (
	"container/list"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/internal/httpx"
)

// HeaderCache is the response header that marks a response built from the cache, and ValueRevalidated
// its value for a stored response that the server confirmed with a 304. Revalidated sets it on the
// response it returns, replacing any X-Cache the server sent (CDNs use the name too). No X-Cache header
// is ever stored: it describes one delivery, not the resource.
const (
	HeaderCache      = "X-Cache"
	ValueRevalidated = "revalidated"
)

// recentInvalidations is how many Invalidate calls the cache remembers, so that a body that was being
// read while its URL was invalidated is not stored afterwards. Older than that, a store is dropped to be
// safe.
const recentInvalidations = 64

// Entry is a stored response, as Lookup returns it. Lookup returns a copy: the caller may change
// Header, Vary and VaryValues, but Body is shared with the cache and must not be modified. An Entry is
// not changed by the cache after it is returned, so it may be read from several goroutines.
type Entry struct {
	// Status is the stored status code, always 200 for now.
	Status int
	// Header holds the stored response headers, without hop-by-hop headers, Set-Cookie and X-Cache.
	Header http.Header
	// Body is the complete stored body.
	Body []byte
	// ETag is the validator to send as If-None-Match, "" if the response had no well-formed ETag.
	ETag string
	// LastModified is sent as If-Modified-Since when there is no ETag.
	LastModified string
	// Vary lists the canonical header names of the response's Vary header.
	Vary []string
	// VaryValues holds, for each name in Vary, the request's values joined with ", ". It is "" for
	// credential headers, which the principal already separates and which are never stored.
	VaryValues []string
	// Stored is when the response was stored or last refreshed by a 304.
	Stored time.Time
	// Size is what the entry counts against the cache's bounds: body, headers, URL, principal and Vary
	// values, in bytes.
	Size int64

	id        uint64 // identifies the stored entry this is a copy of
	urlKey    string
	principal string
}

// Cache is an LRU of GET responses, bounded by the total Size of its entries. Create it with New. A
// Cache is safe for concurrent use; a nil *Cache stores nothing.
type Cache struct {
	maxBytes      int64
	maxEntryBytes int64
	now           func() time.Time
	key           []byte   // the principal key, from NewKey
	secretNames   []string // the engine's secret header names: credentials besides httpx's list

	stored atomic.Int64 // entries stored, for Empty; written under mu
	last   atomic.Pointer[principalMemo]

	// copying is the capacity of the buffers of the bodies being copied by Tee, at most maxBytes;
	// refused counts the storable answers not copied because that pool was full.
	copying atomic.Int64
	refused atomic.Uint64

	mu            sync.Mutex                     // guards the fields below
	lru           list.List                      // of *Entry, most recently used at the front
	elems         map[uint64]*list.Element       // entry id → its place in lru
	byURL         map[string]map[string][]*Entry // URL key → principal → variants, newest first
	bytes         int64                          // sum of the Size of the stored entries
	nextID        uint64
	invalidations uint64                      // Invalidate calls so far
	recent        [recentInvalidations]string // URL key of invalidation n at n % recentInvalidations
}

// New returns an empty cache that holds at most maxBytes (see Entry.Size) and never stores an entry
// bigger than maxEntryBytes. maxEntryBytes <= 0 means maxBytes/8, and it is capped at maxBytes.
// maxBytes <= 0 gives a cache that stores nothing. secretNames are the header names that carry
// credentials besides httpx's built-in list (the engine's configured secret headers): Identify
// separates users by them, and their values are never stored.
func New(maxBytes, maxEntryBytes int64, secretNames ...string) *Cache {
	if maxEntryBytes <= 0 {
		maxEntryBytes = maxBytes / 8
	}
	maxEntryBytes = min(maxEntryBytes, maxBytes)
	return &Cache{
		maxBytes:      maxBytes,
		maxEntryBytes: maxEntryBytes,
		now:           time.Now,
		key:           NewKey(),
		secretNames:   slices.Clone(secretNames),
		elems:         make(map[uint64]*list.Element),
		byURL:         make(map[string]map[string][]*Entry),
	}
}

// Empty reports whether nothing is stored, without taking the lock: a request path can skip the
// principal and the lookup while the cache has nothing to offer. It is safe for concurrent use.
func (c *Cache) Empty() bool { return c == nil || c.stored.Load() == 0 }

// Len returns the number of stored entries. It is safe for concurrent use.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Bytes returns the sum of the Size of the stored entries. It is safe for concurrent use.
func (c *Cache) Bytes() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Lookup returns a copy of the stored entry that req may revalidate, or nil if there is none: req is a
// GET without a precondition or Range of its own, for the same URL (scheme, host, path and query),
// under the same principal, and for every header named by the stored Vary the request's value equals
// the stored one. When several variants match, the newest wins. Lookup marks the entry recently used.
// It is safe for concurrent use.
func (c *Cache) Lookup(principal string, req *http.Request) *Entry {
	if !c.enabled() || !cacheableRequest(req) || hasPrecondition(req.Header) {
		return nil
	}
	key := urlKey(req.URL)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.byURL[key][principal] {
		if varyMatches(e, req.Header, c.secretNames) {
			c.lru.MoveToFront(c.elems[e.id])
			return e.copy()
		}
	}
	return nil
}

// Invalidate removes every entry for the URL u, for all principals and all Vary variants, as a write
// (POST, PUT, PATCH, DELETE) to u requires (RFC 9111 §4.4). A body still being read by a Tee for u is not
// stored when it ends. The caller decides which URLs a write invalidates (the request URL, and the
// Location or Content-Location of the answer if it wants). It is safe for concurrent use.
func (c *Cache) Invalidate(u *url.URL) {
	if c == nil || u == nil {
		return
	}
	key := urlKey(u)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recent[c.invalidations%recentInvalidations] = key
	c.invalidations++
	for _, variants := range c.byURL[key] {
		for _, e := range slices.Clone(variants) {
			c.removeLocked(e)
		}
	}
}

// Revalidated builds the response the caller receives when the server answered req with the 304
// notModified to the validator of e (from Lookup): status 200, the stored headers updated with the
// 304's as RFC 9111 §3.2 and §4.3.4 say (ETag, Cache-Control, Date, Expires, Vary and the rest replaced;
// Content-Length, Content-Encoding and Content-Range kept from the entry), any Set-Cookie of the 304
// (passed on, not stored), a fresh reader over the stored body, Request set to req, and the header
// X-Cache: revalidated. It closes the 304's body and refreshes the stored entry, unless the entry has
// been evicted or invalidated meanwhile (it is not brought back) or the 304's headers make it no
// longer storable (it is removed).
//
// If notModified is not a 304, or e does not belong to principal and req (a caller bug that must not
// leak another principal's body), or the 304 names a different representation (its ETag does not
// weakly match the entry's, or, for an entry without an ETag, its Last-Modified differs), Revalidated
// returns notModified unchanged; in the last case it also removes the entry.
// The caller should then repeat the request without the validator. It is safe for concurrent use.
func (c *Cache) Revalidated(principal string, req *http.Request, notModified *http.Response, e *Entry) *http.Response {
	if notModified == nil || e == nil || req == nil || req.URL == nil ||
		notModified.StatusCode != http.StatusNotModified {
		return notModified
	}
	if principal != e.principal || urlKey(req.URL) != e.urlKey || !varyMatches(e, req.Header, c.secretNames) {
		return notModified
	}
	if !validatorsAgree(e, notModified.Header) {
		c.remove(e.id)
		return notModified
	}
	header := updatedHeader(e.Header, notModified.Header)
	c.refresh(e, header, req)
	closeBody(notModified.Body)

	out := header.Clone()
	if cookies := headerValues(notModified.Header, "Set-Cookie"); len(cookies) > 0 {
		out["Set-Cookie"] = slices.Clone(cookies)
	}
	out.Set(HeaderCache, ValueRevalidated)
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         notModified.Proto,
		ProtoMajor:    notModified.ProtoMajor,
		ProtoMinor:    notModified.ProtoMinor,
		Header:        out,
		Body:          newBodyReader(e.Body),
		ContentLength: int64(len(e.Body)),
		Request:       req,
		TLS:           notModified.TLS,
	}
}

// validatorsAgree reports whether a 304 with header h confirms the entry: if it carries an ETag, that
// ETag must weakly match the entry's (RFC 9111 §4.3.4: a validator that matches no stored response must
// not update one); without an ETag, a Last-Modified it carries must equal the entry's when the entry has
// no ETag.
func validatorsAgree(e *Entry, h http.Header) bool {
	if values := headerValues(h, "Etag"); len(values) > 0 {
		return len(values) == 1 && e.ETag != "" && WeakMatch(trimOWS(values[0]), e.ETag)
	}
	if values := headerValues(h, "Last-Modified"); len(values) > 0 && e.ETag == "" {
		got, err1 := http.ParseTime(values[0])
		want, err2 := http.ParseTime(e.LastModified)
		return len(values) == 1 && err1 == nil && err2 == nil && got.Equal(want)
	}
	return true
}

// refresh replaces the stored entry old with one whose headers are header, the result of a 304 to req.
func (c *Cache) refresh(old *Entry, header http.Header, req *http.Request) {
	if !c.enabled() {
		return
	}
	names, _ := varyNames(header)
	fresh := c.newEntry(old.principal, old.urlKey, header, old.Body, names, varyValues(names, req.Header, c.secretNames))
	keep := Storable(req, &http.Response{StatusCode: http.StatusOK, Header: header})
	c.mu.Lock()
	defer c.mu.Unlock()
	elem, ok := c.elems[old.id]
	if !ok {
		return // evicted or invalidated meanwhile: not brought back
	}
	c.removeLocked(elem.Value.(*Entry))
	if keep {
		fresh.id = old.id // copies taken before the refresh still name it
		c.insertLocked(fresh)
	}
}

// newEntry builds an entry for a 200 with the given stored headers and body, to a request whose values
// for the Vary names were values.
func (c *Cache) newEntry(principal, key string, header http.Header, body []byte, names, values []string) *Entry {
	etag, lastModified := responseValidators(header)
	e := &Entry{
		Status:       http.StatusOK,
		Header:       header,
		Body:         body,
		ETag:         etag,
		LastModified: lastModified,
		Vary:         names,
		VaryValues:   values,
		Stored:       c.now(),
		urlKey:       key,
		principal:    principal,
	}
	e.Size = int64(len(body)+len(key)+len(principal)) + headerSize(header)
	for i := range names {
		e.Size += int64(len(names[i]) + len(e.VaryValues[i]))
	}
	return e
}

// store adds e unless it is too big or its URL was invalidated after invalidation number gen (taken
// when the response started).
func (c *Cache) store(e *Entry, gen uint64) {
	if e.Size > c.maxEntryBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.invalidatedSinceLocked(e.urlKey, gen) {
		return
	}
	c.insertLocked(e)
}

// generation returns the number of Invalidate calls so far, for store.
func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.invalidations
}

// invalidatedSinceLocked reports whether key may have been invalidated after invalidation number gen.
func (c *Cache) invalidatedSinceLocked(key string, gen uint64) bool {
	if c.invalidations-gen > recentInvalidations {
		return true // too long ago to tell
	}
	for n := gen; n < c.invalidations; n++ {
		if c.recent[n%recentInvalidations] == key {
			return true
		}
	}
	return false
}

// insertLocked adds e as the newest variant of its URL and principal, replacing a variant with the same
// Vary names and values, then evicts the least recently used entries until the cache fits.
func (c *Cache) insertLocked(e *Entry) {
	if e.Size > c.maxEntryBytes {
		return
	}
	for _, old := range slices.Clone(c.byURL[e.urlKey][e.principal]) {
		if slices.Equal(old.Vary, e.Vary) && slices.Equal(old.VaryValues, e.VaryValues) {
			c.removeLocked(old)
		}
	}
	if e.id == 0 {
		c.nextID++
		e.id = c.nextID
	}
	c.elems[e.id] = c.lru.PushFront(e)
	byPrincipal := c.byURL[e.urlKey]
	if byPrincipal == nil {
		byPrincipal = make(map[string][]*Entry)
		c.byURL[e.urlKey] = byPrincipal
	}
	byPrincipal[e.principal] = append([]*Entry{e}, byPrincipal[e.principal]...)
	c.bytes += e.Size
	for c.bytes > c.maxBytes {
		c.removeLocked(c.lru.Back().Value.(*Entry))
	}
	c.stored.Store(int64(c.lru.Len()))
}

// remove removes the entry with the given id, if it is still stored.
func (c *Cache) remove(id uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if elem, ok := c.elems[id]; ok {
		c.removeLocked(elem.Value.(*Entry))
	}
}

// removeLocked removes a stored entry from the LRU and the index.
func (c *Cache) removeLocked(e *Entry) {
	c.lru.Remove(c.elems[e.id])
	delete(c.elems, e.id)
	c.stored.Store(int64(c.lru.Len()))
	c.bytes -= e.Size
	byPrincipal := c.byURL[e.urlKey]
	variants := slices.DeleteFunc(byPrincipal[e.principal], func(v *Entry) bool { return v == e })
	switch {
	case len(variants) > 0:
		byPrincipal[e.principal] = variants
	case len(byPrincipal) > 1:
		delete(byPrincipal, e.principal)
	default:
		delete(c.byURL, e.urlKey)
	}
}

func (c *Cache) enabled() bool { return c != nil && c.maxBytes > 0 && c.maxEntryBytes > 0 }

// copy returns a copy of a stored entry that the caller may change, except for Body.
func (e *Entry) copy() *Entry {
	cp := *e
	cp.Header = e.Header.Clone()
	cp.Vary = slices.Clone(e.Vary)
	cp.VaryValues = slices.Clone(e.VaryValues)
	return &cp
}

// varyMatches reports whether the request headers h select e: for every header named by its Vary, the
// request's value equals the stored one. Credential headers are skipped: the principal compares them.
func varyMatches(e *Entry, h http.Header, secretNames []string) bool {
	if len(e.Vary) != len(e.VaryValues) {
		return false
	}
	for i, name := range e.Vary {
		if !httpx.IsCredential(name, secretNames...) && strings.Join(headerValues(h, name), ", ") != e.VaryValues[i] {
			return false
		}
	}
	return true
}

// cacheableRequest reports whether req is a GET whose entries the cache can key by its URL alone.
func cacheableRequest(req *http.Request) bool {
	return req != nil && req.URL != nil && isGet(req) &&
		(req.Host == "" || strings.EqualFold(req.Host, req.URL.Host))
}

// urlKey returns the part of the cache key that names the resource: scheme and host in lower case, the
// default port dropped, then the request target exactly as net/http sends it (escaped path and raw
// query). User information and the fragment are not part of it: they are never sent as such.
func urlKey(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	return scheme + "://" + host + u.RequestURI()
}
