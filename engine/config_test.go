package engine_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// countingTransport wraps a RoundTripper and counts what goes through it, as otelhttp or a test
// recorder wrapping http.DefaultTransport would.
type countingTransport struct {
	next  http.RoundTripper
	calls atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

// A program that wrapped http.DefaultTransport can still build engines (New and NewPublic used to
// panic on an unchecked type assertion), and they send through a pool of their own, not through the
// wrapper. Not parallel: it swaps a global.
func TestNewWithWrappedDefaultTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	orig := http.DefaultTransport
	wrapped := &countingTransport{next: orig}
	http.DefaultTransport = wrapped
	t.Cleanup(func() { http.DefaultTransport = orig })

	for _, tc := range []struct {
		name string
		new  func(...engine.Option) (*engine.Engine, error)
		opts []engine.Option
	}{
		{"New", engine.New, []engine.Option{engine.WithTokens(engine.Tokens{Access: "a"})}},
		{"NewPublic", engine.NewPublic, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			require.NotPanics(t, func() {
				var err error
				e, err = tc.new(append(tc.opts, engine.WithBaseURL(srv.URL))...)
				require.NoError(t, err)
			})
			t.Cleanup(func() { closeEngine(t, e) })
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/x", nil)
			require.NoError(t, err)
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Zero(t, wrapped.calls.Load(), "the engine sent through the program's wrapper of http.DefaultTransport")
		})
	}
}
