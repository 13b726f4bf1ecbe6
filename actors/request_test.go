package actors

import (
	"context"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/messages"
)

func TestOriginMatches(t *testing.T) {
	o, err := ParseOrigin("https://API.example.com/v1")
	require.NoError(t, err)
	assert.Equal(t, "https://api.example.com:443", o.String())
	v6, err := ParseOrigin("http://[::1]:8080")
	require.NoError(t, err)
	for _, tc := range []struct {
		origin Origin
		url    string
		want   bool
	}{
		{o, "https://api.example.com/items", true},
		{o, "https://api.example.com:443/items", true},
		{o, "HTTPS://Api.Example.Com/items", true},
		{o, "http://api.example.com/items", false},
		{o, "https://api.example.com:8443/items", false},
		{o, "https://api.example.com.evil.test/items", false},
		{o, "https://evil.test/?u=https://api.example.com", false},
		{v6, "http://[::1]:8080/x", true},
		{v6, "http://[::1]/x", false},
		{v6, "http://127.0.0.1:8080/x", false},
	} {
		u, err := url.Parse(tc.url)
		require.NoError(t, err)
		assert.Equal(t, tc.want, tc.origin.Matches(u), "%s ~ %s", tc.origin, tc.url)
	}
	for _, bad := range []string{"", "/relative", "ftp://x", "http://", "::"} {
		_, err := ParseOrigin(bad)
		assert.Error(t, err, bad)
	}
}

func TestInflightCloseCancelsAndRefuses(t *testing.T) {
	var f Inflight
	calls := make([]*call, 0, 100)
	for range 100 {
		c, err := f.begin(context.Background())
		require.NoError(t, err)
		calls = append(calls, c)
	}
	for _, c := range calls[:50] {
		c.end()
	}
	for range 100 {
		f.returned()
	}
	require.NoError(t, f.Close(context.Background()))
	for i, c := range calls {
		if i < 50 {
			assert.ErrorIs(t, context.Cause(c.ctx), context.Canceled, "ended normally")
		} else {
			assert.ErrorIs(t, context.Cause(c.ctx), messages.ErrClosed)
		}
	}
	_, err := f.begin(context.Background())
	assert.ErrorIs(t, err, messages.ErrClosed)
	assert.Zero(t, f.Running())
}
