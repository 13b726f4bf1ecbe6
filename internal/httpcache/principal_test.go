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

func TestNewKey(t *testing.T) {
	a, b := NewKey(), NewKey()
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, strings.Repeat("\x00", 32), string(a))
}
