package httpcache

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrincipal(t *testing.T) {
	key := NewKey()
	alice := http.Header{"Authorization": {"Bearer alice-token"}}
	for _, tc := range []struct {
		name  string
		a, b  http.Header
		equal bool
	}{
		{"equal Authorization", alice, http.Header{"Authorization": {"Bearer alice-token"}}, true},
		{"other headers do not count", alice, http.Header{"Authorization": {"Bearer alice-token"}, "Accept": {"x"}}, true},
		{"non-canonical name counts", alice, http.Header{"authorization": {"Bearer alice-token"}}, true},
		{"different Authorization", alice, http.Header{"Authorization": {"Bearer bob-token"}}, false},
		{"Authorization is not Cookie", alice, http.Header{"Cookie": {"Bearer alice-token"}}, false},
		{"cookie added", alice, http.Header{"Authorization": {"Bearer alice-token"}, "Cookie": {"s=1"}}, false},
		{"different cookies", http.Header{"Cookie": {"s=1"}}, http.Header{"Cookie": {"s=2"}}, false},
		{"length-prefixed values", http.Header{"Cookie": {"a", "bc"}}, http.Header{"Cookie": {"ab", "c"}}, false},
		{"value boundary between headers", http.Header{"Authorization": {"a"}, "Cookie": {"bc"}},
			http.Header{"Authorization": {"ab"}, "Cookie": {"c"}}, false},
		{"empty credential is not anonymous", http.Header{"Authorization": {""}}, http.Header{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Principal(key, tc.a), Principal(key, tc.b)
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

func TestNewKey(t *testing.T) {
	a, b := NewKey(), NewKey()
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, strings.Repeat("\x00", 32), string(a))
}
