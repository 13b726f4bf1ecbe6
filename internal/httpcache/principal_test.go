package httpcache

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrincipal(t *testing.T) {
	key := NewKey()
	alice := http.Header{"Authorization": {"Bearer alice-token"}}
	for _, tc := range []struct {
		name    string
		a, b    http.Header
		equal   bool
		secrets []string
	}{
		{"equal Authorization", alice, http.Header{"Authorization": {"Bearer alice-token"}}, true, nil},
		{"other headers do not count", alice, http.Header{"Authorization": {"Bearer alice-token"}, "Accept": {"x"}}, true, nil},
		{"non-canonical name counts", alice, http.Header{"authorization": {"Bearer alice-token"}}, true, nil},
		{"different Authorization", alice, http.Header{"Authorization": {"Bearer bob-token"}}, false, nil},
		{"Authorization is not Cookie", alice, http.Header{"Cookie": {"Bearer alice-token"}}, false, nil},
		{"cookie added", alice, http.Header{"Authorization": {"Bearer alice-token"}, "Cookie": {"s=1"}}, false, nil},
		{"different cookies", http.Header{"Cookie": {"s=1"}}, http.Header{"Cookie": {"s=2"}}, false, nil},
		{"length-prefixed values", http.Header{"Cookie": {"a", "bc"}}, http.Header{"Cookie": {"ab", "c"}}, false, nil},
		{"value boundary between headers", http.Header{"Authorization": {"a"}, "Cookie": {"bc"}},
			http.Header{"Authorization": {"ab"}, "Cookie": {"c"}}, false, nil},
		{"empty credential is not anonymous", http.Header{"Authorization": {""}}, http.Header{}, false, nil},
		{"API key", http.Header{"X-Api-Key": {"k1"}}, http.Header{"X-Api-Key": {"k2"}}, false, nil},
		{"API key spelled otherwise", http.Header{"x-api-key": {"k1"}}, http.Header{"X-API-KEY": {"k2"}}, false, nil},
		{"API key added to Authorization", alice, http.Header{"Authorization": {"Bearer alice-token"}, "X-Api-Key": {"k"}}, false, nil},
		{"API key is not Api-Key", http.Header{"X-Api-Key": {"k"}}, http.Header{"Api-Key": {"k"}}, false, nil},
		{"Proxy-Authorization", http.Header{"Proxy-Authorization": {"p1"}}, http.Header{"Proxy-Authorization": {"p2"}}, false, nil},
		{"secret header name", http.Header{"X-Tenant": {"t1"}}, http.Header{"X-Tenant": {"t2"}}, false, []string{"X-Tenant"}},
		{"secret header name, any spelling", http.Header{"x-tenant": {"t1"}}, http.Header{"X-Tenant": {"t2"}}, false, []string{"x-TENANT"}},
		{"same values, same order whatever the map order",
			http.Header{"Authorization": {"a"}, "Cookie": {"c"}, "X-Api-Key": {"k"}, "x-api-key": {"k2"}},
			http.Header{"x-api-key": {"k2"}, "X-Api-Key": {"k"}, "Cookie": {"c"}, "Authorization": {"a"}}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Principal(key, tc.a, tc.secrets...), Principal(key, tc.b, tc.secrets...)
			require.NotEmpty(t, a)
			if tc.equal {
				assert.Equal(t, a, b)
			} else {
				assert.NotEqual(t, a, b)
			}
		})
	}

	t.Run("anonymous", func(t *testing.T) {
		assert.Empty(t, Principal(key, nil))
		assert.Empty(t, Principal(key, http.Header{"Accept": {"*/*"}}))
		assert.Empty(t, Principal(key, http.Header{"X-Tenant": {"t"}}), "not a credential unless named")
	})
	t.Run("keyed", func(t *testing.T) {
		assert.NotEqual(t, Principal(key, alice), Principal(NewKey(), alice))
	})
	t.Run("raw values never appear", func(t *testing.T) {
		secret := "Bearer s3cr3t-s3cr3t-s3cr3t"
		p := Principal(key, http.Header{"Authorization": {secret}, "Cookie": {"session=cookie-secret"}})
		for _, form := range []string{secret, "s3cr3t", "cookie-secret",
			base64.RawURLEncoding.EncodeToString([]byte("s3cr3t")), hex.EncodeToString([]byte("s3cr3t"))} {
			assert.NotContains(t, p, form)
		}
		assert.Len(t, p, base64.RawURLEncoding.EncodedLen(32))
	})
}

// Identify remembers the last principal it derived: it must still give every request its own, under
// any interleaving of users, spellings and multi-valued headers, from hundreds of goroutines.
func TestIdentifyMemo(t *testing.T) {
	c := New(1<<20, 0, "X-Tenant")
	headers := []http.Header{
		{"Authorization": {"Bearer alice"}},
		{"Authorization": {"Bearer bob"}},
		{"authorization": {"Bearer alice"}},
		{"Authorization": {"Bearer alice"}, "X-Tenant": {"t1"}},
		{"Authorization": {"Bearer alice"}, "X-Tenant": {"t2"}},
		{"X-Tenant": {"Bearer alice"}},
		{"Authorization": {"Bearer alice", "Bearer bob"}},
		{"Authorization": {"Bearer alice"}, "Accept": {"x"}},
		{"Cookie": {"a"}, "cookie": {"b"}},
		{"Accept": {"x"}},
	}
	want := make([]string, len(headers))
	for i, h := range headers {
		want[i] = Principal(c.key, h, "X-Tenant")
	}
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			for i := range 50 {
				n := (g*7 + i*3) % len(headers)
				if got := c.Identify(headers[n]); got != want[n] {
					t.Errorf("header %d: got the principal of another request", n)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, want[0], want[2], "spelling does not change the principal of one value")
	assert.Equal(t, want[0], want[7])
	assert.Empty(t, want[9])
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(want[:7]))), 6)
}

func TestNewKey(t *testing.T) {
	a, b := NewKey(), NewKey()
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, strings.Repeat("\x00", 32), string(a))
}

// The header of a typical engine request to the API: the engine's token and the usual others.
func engineHeader() http.Header {
	return http.Header{
		"Authorization": {"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEiLCJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl"},
		"Accept":        {"application/json"},
		"User-Agent":    {"resilient/1"},
		"Traceparent":   {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
}

func BenchmarkIdentify(b *testing.B) {
	for _, tc := range []struct {
		name    string
		h       http.Header
		secrets []string
	}{
		{"token", engineHeader(), nil},
		{"token and secret header", func() http.Header {
			h := engineHeader()
			h["X-Tenant"] = []string{"tenant-key"}
			return h
		}(), []string{"X-Tenant"}},
		{"anonymous", http.Header{"Accept": {"application/json"}, "User-Agent": {"resilient/1"}}, nil},
	} {
		// Principal is Identify without the memo.
		b.Run(tc.name+"/Principal", func(b *testing.B) {
			key := NewKey()
			b.ReportAllocs()
			for b.Loop() {
				_ = Principal(key, tc.h, tc.secrets...)
			}
		})
		b.Run(tc.name+"/Identify", func(b *testing.B) {
			c := New(1<<20, 0, tc.secrets...)
			b.ReportAllocs()
			for b.Loop() {
				_ = c.Identify(tc.h)
			}
		})
	}
}
