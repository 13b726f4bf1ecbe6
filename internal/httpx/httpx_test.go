package httpx

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSplitHostPort(t *testing.T) {
	for _, tc := range []struct{ in, host, port string }{
		{"example.com", "example.com", ""},
		{"example.com:8080", "example.com", "8080"},
		{"[::1]:443", "::1", "443"},
		{"[::1]", "::1", ""},
		{"", "", ""},
		{"host:", "host", ""},
	} {
		h, p := SplitHostPort(tc.in)
		assert.Equal(t, tc.host, h, tc.in)
		assert.Equal(t, tc.port, p, tc.in)
	}
}

func TestIsCredential(t *testing.T) {
	for _, name := range []string{"authorization", "COOKIE", "x-api-key", "Proxy-Authorization", "X-Auth-Token"} {
		assert.True(t, IsCredential(name), name)
	}
	assert.True(t, IsCredential("x-tenant-secret", "X-Tenant-Secret"))
	for _, name := range []string{"Accept", "Idempotency-Key", "X-Request-Id", ""} {
		assert.False(t, IsCredential(name), name)
	}
}

func TestHasIdempotencyKey(t *testing.T) {
	assert.False(t, HasIdempotencyKey(nil))
	assert.False(t, HasIdempotencyKey(http.Header{"Idempotency-Key": {""}}))
	assert.True(t, HasIdempotencyKey(http.Header{"Idempotency-Key": {"k"}}))
	assert.True(t, HasIdempotencyKey(http.Header{"idempotency-key": {"k"}}))
}
