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

// Close cancels every request still running with ErrClosed, whatever its parent context: one that
// can be cancelled gets a cancel context of its own (released when the request ends), one that can
// never be (context.Background) shares the registry's life instead; and Close refuses new ones.
func TestInflightCloseCancelsAndRefuses(t *testing.T) {
	cancellable, stop := context.WithCancel(context.Background())
	defer stop()
	for _, tc := range []struct {
		name   string
		parent context.Context
		shared bool
	}{{"cancellable parent", cancellable, false}, {"background parent", context.Background(), true}} {
		t.Run(tc.name, func(t *testing.T) {
			var f Inflight
			calls := make([]*call, 0, 100)
			for range 100 {
				c, err := f.begin(tc.parent)
				require.NoError(t, err)
				calls = append(calls, c)
			}
			for _, c := range calls[:50] {
				c.end()
			}
			for range 100 {
				f.returned()
			}
			for i, c := range calls {
				if i < 50 && !tc.shared {
					assert.ErrorIs(t, context.Cause(c.ctx), context.Canceled, "ended normally: released")
				} else {
					assert.NoError(t, c.ctx.Err(), "running, or sharing the registry's life")
				}
			}
			require.NoError(t, f.Close(context.Background()))
			for i, c := range calls[50:] {
				assert.ErrorIs(t, context.Cause(c.ctx), messages.ErrClosed, "call %d", 50+i)
				assert.ErrorIs(t, c.ctx.Err(), context.Canceled)
			}
			_, err := f.begin(tc.parent)
			assert.ErrorIs(t, err, messages.ErrClosed)
			assert.Zero(t, f.Running())
		})
	}
}

// A request on a context that can never be cancelled keeps its parent's values.
func TestInflightSharedContextKeepsValues(t *testing.T) {
	type key struct{}
	var f Inflight
	c, err := f.begin(context.WithValue(context.Background(), key{}, "v"))
	require.NoError(t, err)
	assert.Equal(t, "v", c.ctx.Value(key{}))
	assert.NotNil(t, c.ctx.Done(), "it can be cancelled: by Close")
	derived, cancel := context.WithCancel(c.ctx)
	defer cancel()
	f.returned()
	require.NoError(t, f.Close(context.Background()))
	assert.ErrorIs(t, context.Cause(derived), messages.ErrClosed, "contexts derived from it end with it")
}
