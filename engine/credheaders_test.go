package engine_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// A credential header the engine has no list entry for (an API's own X-Api-Token, say) still keeps
// users apart in the cache: a name holding key, token, auth, secret, session, signature, password or
// credential is taken for one. The server answers 304 to whoever sends its one ETag, so a cache that
// let bob revalidate alice's entry would hand him alice's data.
func TestETagCacheSeparatesUnlistedCredentialHeaders(t *testing.T) {
	for _, name := range []string{"X-Api-Token", "x-tenant-apikey", "X-Session-Id", "X-Client-Secret",
		"X-Request-Signature", "X-Custom-Auth", "X-User-Password", "X-Service-Credential"} {
		t.Run(name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"one-for-all"`)
				if r.Header.Get("If-None-Match") == `"one-for-all"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				who := r.Header.Get(name)
				if who == "" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				_, _ = io.WriteString(w, "data of "+who)
			}))
			defer api.Close()
			e, err := engine.NewPublic()
			require.NoError(t, err)
			defer closeEngine(t, e)
			get := func(key string) string {
				req, err := http.NewRequest(http.MethodGet, api.URL+"/me", nil)
				require.NoError(t, err)
				req.Header[name] = []string{key}
				resp, err := e.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				return string(b)
			}
			for range 2 {
				assert.Equal(t, "data of alice-key", get("alice-key"))
				assert.Equal(t, "data of bob-key", get("bob-key"))
			}
		})
	}
}
