package httpcache

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/http"
	"slices"
	"strings"
)

// credentialHeaders are the request headers whose values decide a request's principal. The order is
// part of the hash input and must not change while a key is in use.
var credentialHeaders = [...]string{"Authorization", "Cookie"}

// Principal derives the cache partition of a request from the credentials it carries: an HMAC-SHA256
// under key of every Authorization and Cookie value in h, each length-prefixed (so "a"+"bc" and "ab"+"c"
// differ), encoded as unpadded URL-safe base64. Header names are matched case-insensitively, so a value
// stored under a non-canonical key still counts. A request with neither header gives "", the anonymous
// partition; a header that is present but empty is still a credential and does not give "".
//
// The raw values never leave the function. The key should come from NewKey and live as long as the
// Cache: with an empty or guessable key the result is an unkeyed hash, and low-entropy cookies could be
// recovered from it by guessing. Principal is a pure function, safe for concurrent use.
func Principal(key []byte, h http.Header) string {
	var mac hash.Hash
	for _, name := range credentialHeaders {
		values := headerValues(h, name)
		if len(values) == 0 {
			continue
		}
		if mac == nil {
			mac = hmac.New(sha256.New, key)
		}
		writeField(mac, name)
		writeLen(mac, len(values))
		for _, v := range values {
			writeField(mac, v)
		}
	}
	if mac == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// NewKey returns 32 random bytes from crypto/rand, a key for Principal. It is safe for concurrent use.
func NewKey() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails since Go 1.24.
	return key
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

func writeLen(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}

func writeField(h hash.Hash, s string) {
	writeLen(h, len(s))
	h.Write([]byte(s))
}
