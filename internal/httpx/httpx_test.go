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
	for _, tc := range []struct {
		name  string
		extra []string
		want  bool
	}{
		{"authorization", nil, true},
		{"COOKIE", nil, true},
		{"x-api-key", nil, true},
		{"Proxy-Authorization", nil, true},
		{"X-Auth-Token", nil, true},
		{"x-tenant-secret", []string{"X-Tenant-Secret"}, true},
		{"X-Tenant-Pass", []string{"x-tenant-pass"}, true},
		{"X-Api-Token", nil, true},
		{"x-my-APIKEY", nil, true},
		{"X-Session-Id", nil, true},
		{"X-Request-Signature", nil, true},
		{"X-Password", nil, true},
		{"X-Client-Credential", nil, true},
		{"X-Authn", nil, true},
		{"X-Shared-Secret", nil, true},
		{"Accept", nil, false},
		{"Idempotency-Key", nil, false},
		{"idempotency-key", nil, false},
		{"X-Idempotency-Key", nil, false},
		{"Sec-WebSocket-Key", nil, false},
		{"X-Request-Id", nil, false},
		{"Content-Type", nil, false},
		{"Keep-Alive", nil, false},
		{"", nil, false},
	} {
		assert.Equal(t, tc.want, IsCredential(tc.name, tc.extra...), tc.name)
	}
}

func TestHasIdempotencyKey(t *testing.T) {
	assert.False(t, HasIdempotencyKey(nil))
	assert.False(t, HasIdempotencyKey(http.Header{"Idempotency-Key": {""}}))
	assert.True(t, HasIdempotencyKey(http.Header{"Idempotency-Key": {"k"}}))
	assert.True(t, HasIdempotencyKey(http.Header{"idempotency-key": {"k"}}))
}
