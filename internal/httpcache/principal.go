package httpcache

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/http"
	"slices"

	"github.com/resilientclient/resilient/internal/httpx"
)

// Principal derives the cache partition of a request from the credentials it carries: an HMAC-SHA256
// under key of every credential header in h (httpx.IsCredential with secretNames, the engine's
// configured secret headers: Authorization, Cookie, X-Api-Key and the like), names and values each
// length-prefixed (so "a"+"bc" and "ab"+"c" differ), encoded as unpadded URL-safe base64. Header names
// are matched case-insensitively, so a value stored under a non-canonical key still counts (net/http
// sends keys as written). A request without credentials gives "", the anonymous partition; a header
// that is present but empty is still a credential and does not give "".
//
// The raw values never leave the function. The key should come from NewKey and live as long as the
// Cache: with an empty or guessable key the result is an unkeyed hash, and low-entropy cookies could be
// recovered from it by guessing. Principal is a pure function, safe for concurrent use.
func Principal(key []byte, h http.Header, secretNames ...string) string {
	var buf [4]credential
	return principalOf(key, h, credentials(buf[:0], h, secretNames))
}

// principalOf is Principal of h, whose credential headers are creds (from credentials).
func principalOf(key []byte, h http.Header, creds []credential) string {
	if len(creds) == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, key)
	for _, c := range creds {
		writeField(mac, c.name)
		values := h[c.key]
		writeLen(mac, len(values))
		for _, v := range values {
			writeField(mac, v)
		}
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Identify returns the principal of a request with the headers h (see Principal), under this cache's
// key and with its secret header names: the partition to pass to Lookup, Revalidated and Tee. It is
// safe for concurrent use.
func (c *Cache) Identify(h http.Header) string {
	if c == nil {
		return ""
	}
	var buf [4]credential
	creds := credentials(buf[:0], h, c.secretNames)
	if len(creds) == 0 {
		return ""
	}
	if m := c.last.Load(); m != nil && m.matches(h, creds) {
		return m.principal
	}
	p := principalOf(c.key, h, creds)
	if m := newPrincipalMemo(h, creds, p); m != nil {
		c.last.Store(m)
	}
	return p
}

// credential is a credential header of a request: its key in the header map and its canonical name.
type credential struct{ key, name string }

// credentials appends the credential headers of h to dst, sorted: map order is random, and the hash
// input must not be. Two spellings of one name sort by spelling.
func credentials(dst []credential, h http.Header, secretNames []string) []credential {
	for k := range h {
		if httpx.IsCredential(k, secretNames...) {
			dst = append(dst, credential{key: k, name: http.CanonicalHeaderKey(k)})
		}
	}
	if len(dst) > 1 {
		slices.SortFunc(dst, func(a, b credential) int {
			return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.key, b.key))
		})
	}
	return dst
}

// principalMemo is the principal of the last request whose credential headers each had one value:
// the engine's own requests carry the same token (and secret headers) until a refresh, and the
// HMAC is most of what Identify costs. It is never changed once stored.
type principalMemo struct {
	fields    []string // key and value of each credential header, in credentials order
	principal string
}

// matches reports whether h, whose credential headers are creds, is the request the memo was made for.
func (m *principalMemo) matches(h http.Header, creds []credential) bool {
	if len(m.fields) != 2*len(creds) {
		return false
	}
	for i, c := range creds {
		v := h[c.key]
		if len(v) != 1 || m.fields[2*i] != c.key || m.fields[2*i+1] != v[0] {
			return false
		}
	}
	return true
}

// newPrincipalMemo returns a memo for h, or nil if one of its credential headers has several values.
func newPrincipalMemo(h http.Header, creds []credential, principal string) *principalMemo {
	m := &principalMemo{fields: make([]string, 0, 2*len(creds)), principal: principal}
	for _, c := range creds {
		v := h[c.key]
		if len(v) != 1 {
			return nil
		}
		m.fields = append(m.fields, c.key, v[0])
	}
	return m
}

// NewKey returns 32 random bytes from crypto/rand, a key for Principal. It is safe for concurrent use.
func NewKey() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails since Go 1.24.
	return key
}

func writeLen(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func writeField(h hash.Hash, s string) {
	writeLen(h, len(s))
	h.Write([]byte(s))
}
