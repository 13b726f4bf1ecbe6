package engine_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// closeCounter is a request body that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// Request shapes the fuzz target and the table test build; bits of one byte.
const (
	nilURL = 1 << iota
	nilHeader
	withBody
	withGetBody
)

// loopbackEngine is an engine whose transport dials srv whatever host a request names: fuzzed URLs
// never leave the machine.
func loopbackEngine(t testing.TB, srv *httptest.Server) *engine.Engine {
	addr := srv.Listener.Addr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	e, err := engine.New(engine.WithBaseURL(srv.URL), engine.WithTransport(tr),
		engine.WithTokens(engine.Tokens{Access: "fuzz-access", Expiry: time.Now().Add(time.Hour)}),
		engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

// roundTripShape sends one request of the given shape through e's Transport and checks what
// net/http's Transport promises: an error or a response, never a panic, and a request body closed
// when the request is refused.
func roundTripShape(t *testing.T, e *engine.Engine, method, rawURL string, shape byte) (*http.Response, error) {
	req := &http.Request{Method: method, Header: http.Header{"Accept": {"*/*"}}}
	if shape&nilURL == 0 {
		u, err := url.Parse(rawURL)
		if err != nil {
			u = &url.URL{Scheme: "http", Host: "api.test", Path: "/" + rawURL}
		}
		req.URL = u
		req.Host = u.Host
	}
	if shape&nilHeader != 0 {
		req.Header = nil
	}
	var body *closeCounter
	if shape&withBody != 0 {
		body = &closeCounter{Reader: strings.NewReader("payload")}
		req.Body, req.ContentLength = body, 7
		if shape&withGetBody != 0 {
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("payload")), nil }
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.Transport().RoundTrip(req.WithContext(ctx))
	if err != nil {
		assert.Nil(t, resp)
		if errors.Is(err, engine.ErrInvalidRequest) && body != nil {
			assert.Equal(t, int32(1), body.closed.Load(), "a refused request's body is closed")
		}
		return nil, err
	}
	require.NotNil(t, resp)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	return resp, nil
}

// RoundTrip refuses what net/http's Transport refuses, with ErrInvalidRequest and no panic: no URL
// (the deferred recovery used to read it again and panic out of RoundTrip), no Header, a relative
// URL, a method that is not a token. A body without GetBody is sent once.
func TestRoundTripMalformedRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(srv.Close)
	e := loopbackEngine(t, srv)
	for _, tc := range []struct {
		name    string
		method  string
		url     string
		shape   byte
		invalid bool
	}{
		{"nil URL", "GET", "", nilURL, true},
		{"nil URL with a body", "POST", "", nilURL | withBody, true},
		{"nil Header", "GET", srv.URL + "/x", nilHeader, true},
		{"relative URL", "GET", "/items/1", 0, true},
		{"bad method", "GE T", srv.URL + "/x", withBody, true},
		{"empty method means GET", "", srv.URL + "/x", 0, false},
		{"body without GetBody", "PUT", srv.URL + "/x", withBody, false},
		{"body with GetBody", "POST", srv.URL + "/x", withBody | withGetBody, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			require.NotPanics(t, func() { resp, err = roundTripShape(t, e, tc.method, tc.url, tc.shape) })
			if tc.invalid {
				assert.ErrorIs(t, err, engine.ErrInvalidRequest)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// RoundTrip never panics, whatever the request (seed corpus only in CI: go test runs the seeds).
func FuzzRoundTrip(f *testing.F) {
	f.Add("GET", "", byte(nilURL))
	f.Add("POST", "", byte(nilURL|withBody))
	f.Add("GET", "http://api.test/x", byte(nilHeader))
	f.Add("GET", "/relative", byte(0))
	f.Add("GE T", "http://api.test/x", byte(0))
	f.Add("PUT", "http://api.test/x", byte(withBody))
	f.Add("POST", "http://api.test/x", byte(withBody|withGetBody))
	f.Add("GET", "http://[::1", byte(0))
	f.Add("DELETE", "ftp://api.test/x", byte(withBody))
	f.Add("\x00", "http://%zz/", byte(nilHeader|withBody))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	f.Cleanup(srv.Close)
	e := loopbackEngine(f, srv)
	f.Fuzz(func(t *testing.T, method, rawURL string, shape byte) {
		_, _ = roundTripShape(t, e, method, rawURL, shape)
	})
}
