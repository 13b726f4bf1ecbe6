package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newRequest builds a request without a body, with an Idempotency-Key when key is not empty.
func newRequest(t testing.TB, ctx context.Context, method, target, key string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return req
}

func TestIdempotent(t *testing.T) {
	for _, tc := range []struct {
		method, key string
		want        bool
	}{
		{"", "", true}, // net/http reads an empty method as GET
		{http.MethodGet, "", true},
		{http.MethodHead, "", true},
		{http.MethodPut, "", true},
		{http.MethodDelete, "", true},
		{http.MethodOptions, "", true},
		{http.MethodTrace, "", true},
		{http.MethodPost, "", false},
		{http.MethodPatch, "", false},
		{http.MethodConnect, "", false},
		{"get", "", false}, // methods are case-sensitive (RFC 9110 §9.1)
		{"PROPFIND", "", false},
		{http.MethodPost, "k-1", true},
		{http.MethodPatch, "k-1", true},
		{"PROPFIND", "k-1", true},
	} {
		t.Run(tc.method+"/"+tc.key, func(t *testing.T) {
			req := &http.Request{Method: tc.method, Header: http.Header{}}
			if tc.key != "" {
				req.Header.Set("Idempotency-Key", tc.key)
			}
			assert.Equal(t, tc.want, Idempotent(req))
		})
	}
	assert.False(t, Idempotent(nil))
	assert.False(t, Idempotent(&http.Request{Method: http.MethodPost}), "a nil Header has no key")
	assert.False(t, Idempotent(&http.Request{Method: http.MethodPost, Header: http.Header{"Idempotency-Key": {""}}}),
		"an empty key is no key")
}

func TestDecideStatus(t *testing.T) {
	methods := []struct {
		name, method, key string
	}{
		{"GET", http.MethodGet, ""},
		{"POST", http.MethodPost, ""},
		{"POST with key", http.MethodPost, "k-1"},
		{"PATCH", http.MethodPatch, ""},
		{"PUT", http.MethodPut, ""},
		{"DELETE", http.MethodDelete, ""},
	}
	// plain is the reason for an idempotent method without a key, keyed the one with a key; requests
	// that are not idempotent are never retried. 500 is retried only by Decider(true).
	statuses := []struct {
		status       int
		plain, keyed string
	}{
		{200, "", ""}, {201, "", ""}, {204, "", ""},
		{301, "", ""}, {304, "", ""},
		{400, "", ""}, {401, "", ""}, {403, "", ""}, {404, "", ""}, {408, "", ""},
		{409, "", ReasonInProgress},
		{422, "", ""},
		{429, ReasonTooManyRequests, ReasonTooManyRequests},
		{500, ReasonServerError, ReasonServerError},
		{501, "", ""},
		{502, ReasonBadGateway, ReasonBadGateway},
		{503, ReasonUnavailable, ReasonUnavailable},
		{504, ReasonGatewayTimeout, ReasonGatewayTimeout},
		{505, "", ""},
	}
	for _, retry500 := range []bool{false, true} {
		decide := Decider(retry500)
		for _, m := range methods {
			for _, s := range statuses {
				t.Run(fmt.Sprintf("retry500=%v/%s/%d", retry500, m.name, s.status), func(t *testing.T) {
					req := newRequest(t, context.Background(), m.method, "http://example.test/", m.key)
					want := ""
					switch {
					case !Idempotent(req):
					case m.key != "":
						want = s.keyed
					default:
						want = s.plain
					}
					if s.status == http.StatusInternalServerError && !retry500 {
						want = ""
					}
					reason, again := decide(req, &http.Response{StatusCode: s.status, Request: req}, nil)
					assert.Equal(t, want, reason)
					assert.Equal(t, want != "", again)
				})
			}
		}
	}
}

func TestDecideIdempotencyKeyOnIdempotentMethod(t *testing.T) {
	req := newRequest(t, context.Background(), http.MethodPut, "http://example.test/", "k-1")
	reason, again := Decider(false)(req, &http.Response{StatusCode: http.StatusConflict}, nil)
	assert.True(t, again)
	assert.Equal(t, ReasonInProgress, reason)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// hijackServer starts a loopback server that takes each connection from net/http after reading the
// request headers and hands it to f, without answering.
func hijackServer(t *testing.T, f func(net.Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		f(conn)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// slowServer starts a loopback server that answers nothing until the client goes away.
func slowServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: frees a handler Close would wait for
	return srv.URL
}

// freshClient returns a client on a transport of its own that never reuses connections, so that
// net/http does not retry a broken reused connection by itself and hide the error.
func freshClient(t *testing.T, headerTimeout time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: headerTimeout}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// sendErr sends req and returns its error; the test fails if an answer arrives.
func sendErr(t *testing.T, c *http.Client, req *http.Request) error {
	t.Helper()
	resp, err := c.Do(req)
	if resp != nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the server must not answer")
	return err
}

// opErr wraps errno as the net package does for a failed read or write.
func opErr(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
}

// urlErr wraps err as http.Client does.
func urlErr(err error) error {
	return &url.Error{Op: "Get", URL: "http://example.test/", Err: err}
}

func TestDecideRealErrors(t *testing.T) {
	refused := closedAddr(t)
	eof := hijackServer(t, func(c net.Conn) { c.Close() })
	reset := hijackServer(t, func(c net.Conn) {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			t.Errorf("hijacked a %T, want *net.TCPConn", c)
			c.Close()
			return
		}
		assert.NoError(t, tc.SetLinger(0)) // Close then sends RST instead of FIN
		c.Close()
	})
	slow := slowServer(t)

	for _, tc := range []struct {
		name    string
		target  string
		timeout time.Duration // the client's ResponseHeaderTimeout
		wantErr error         // what the error must be, to prove the test meets the condition it means to
		byKey   map[string]string
	}{
		{"connection refused", "http://" + refused + "/", 0, syscall.ECONNREFUSED,
			map[string]string{"GET": ReasonConnRefused, "POST": ReasonConnRefused, "PATCH": ReasonConnRefused, "POST with key": ReasonConnRefused}},
		{"closed without an answer", eof, 0, io.EOF,
			map[string]string{"GET": ReasonEOF, "POST": "", "PATCH": "", "POST with key": ReasonEOF}},
		{"reset", reset, 0, syscall.ECONNRESET,
			map[string]string{"GET": ReasonConnReset, "POST": "", "PATCH": "", "POST with key": ReasonConnReset}},
		{"response header timeout", slow, 20 * time.Millisecond, nil,
			map[string]string{"GET": ReasonTimeout, "POST": "", "PATCH": "", "POST with key": ReasonTimeout}},
	} {
		for _, m := range []struct{ name, method, key string }{
			{"GET", http.MethodGet, ""},
			{"POST", http.MethodPost, ""},
			{"PATCH", http.MethodPatch, ""},
			{"POST with key", http.MethodPost, "k-1"},
		} {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				req := newRequest(t, context.Background(), m.method, tc.target, m.key)
				err := sendErr(t, freshClient(t, tc.timeout), req)
				var ue *url.Error
				require.ErrorAs(t, err, &ue, "http.Client wraps its errors in *url.Error")
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
				} else {
					var ne net.Error
					require.ErrorAs(t, err, &ne)
					require.True(t, ne.Timeout())
				}
				want := tc.byKey[m.name]
				reason, again := Decider(false)(req, nil, err)
				assert.Equal(t, want, reason)
				assert.Equal(t, want != "", again)
			})
		}
	}
}

func TestDecideReadDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	if srv, ok := <-accepted; ok {
		defer srv.Close()
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	decide := Decider(false)
	get := newRequest(t, context.Background(), http.MethodGet, "http://example.test/", "")
	post := newRequest(t, context.Background(), http.MethodPost, "http://example.test/", "")
	reason, again := decide(get, nil, urlErr(err))
	assert.True(t, again)
	assert.Equal(t, ReasonTimeout, reason)
	_, again = decide(post, nil, urlErr(err))
	assert.False(t, again)
}

func TestDecideContext(t *testing.T) {
	decide := Decider(true)
	slow := slowServer(t)

	t.Run("canceled before sending", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := newRequest(t, ctx, http.MethodGet, slow, "")
		err := sendErr(t, freshClient(t, 0), req)
		require.ErrorIs(t, err, context.Canceled)
		reason, again := decide(req, nil, err)
		assert.False(t, again)
		assert.Empty(t, reason)
	})
	t.Run("request deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req := newRequest(t, ctx, http.MethodGet, slow, "")
		err := sendErr(t, freshClient(t, 0), req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout(), "a context deadline is a timeout net.Error too")
		_, again := decide(req, nil, err)
		assert.False(t, again, "the request's own deadline is the caller's to handle")
	})
	t.Run("request context ended, other error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := newRequest(t, ctx, http.MethodGet, "http://example.test/", "")
		_, again := decide(req, nil, urlErr(opErr("read", syscall.ECONNRESET)))
		assert.False(t, again, "no retry once the request's context is over")
	})
	t.Run("canceled while the request context is live", func(t *testing.T) {
		req := newRequest(t, context.Background(), http.MethodGet, "http://example.test/", "")
		_, again := decide(req, nil, urlErr(context.Canceled))
		assert.False(t, again)
	})
	t.Run("transport deadline while the request context is live", func(t *testing.T) {
		// net/http's ResponseHeaderTimeout and Client.Timeout errors match context.DeadlineExceeded
		// although the request's context is live; so does a bare DeadlineExceeded from elsewhere.
		req := newRequest(t, context.Background(), http.MethodGet, "http://example.test/", "")
		reason, again := decide(req, nil, urlErr(context.DeadlineExceeded))
		assert.True(t, again)
		assert.Equal(t, ReasonTimeout, reason)
	})
}

// timeoutErr is a net.Error with a chosen Timeout.
type timeoutErr struct{ timeout bool }

func (e timeoutErr) Error() string   { return "timeout " + strconv.FormatBool(e.timeout) }
func (e timeoutErr) Timeout() bool   { return e.timeout }
func (e timeoutErr) Temporary() bool { return false }

func TestDecideWrappedErrors(t *testing.T) {
	decide := Decider(false)
	for _, tc := range []struct {
		name       string
		err        error
		get, post  string // the reason for a GET and for a POST without a key
		postKeyed  string // the reason for a POST with a key
		wantNetwrk bool   // NetworkReason's ok
	}{
		{"refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
			ReasonConnRefused, ReasonConnRefused, ReasonConnRefused, true},
		{"reset on read", urlErr(opErr("read", syscall.ECONNRESET)), ReasonConnReset, "", ReasonConnReset, true},
		{"aborted", urlErr(opErr("read", syscall.ECONNABORTED)), ReasonConnReset, "", ReasonConnReset, true},
		{"broken pipe", urlErr(opErr("write", syscall.EPIPE)), ReasonConnReset, "", ReasonConnReset, true},
		{"EOF", urlErr(io.EOF), ReasonEOF, "", ReasonEOF, true},
		{"unexpected EOF", urlErr(fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF)), ReasonEOF, "", ReasonEOF, true},
		{"net timeout", urlErr(timeoutErr{true}), ReasonTimeout, "", ReasonTimeout, true},
		{"DNS timeout", urlErr(&net.DNSError{Err: "timeout", Name: "example.test", IsTimeout: true}), ReasonTimeout, "", ReasonTimeout, true},
		{"joined", errors.Join(errors.New("first"), opErr("read", syscall.ECONNRESET)), ReasonConnReset, "", ReasonConnReset, true},
		{"net error without timeout", urlErr(timeoutErr{false}), "", "", "", false},
		{"DNS not found", urlErr(&net.DNSError{Err: "no such host", Name: "example.test", IsNotFound: true}), "", "", "", false},
		{"other errno", urlErr(opErr("read", syscall.EACCES)), "", "", "", false},
		{"plain error", urlErr(errors.New("tls: bad certificate")), "", "", "", false},
		{"canceled", urlErr(fmt.Errorf("reading: %w", context.Canceled)), "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				method, key, want string
			}{
				{http.MethodGet, "", tc.get},
				{http.MethodPost, "", tc.post},
				{http.MethodPost, "k-1", tc.postKeyed},
			} {
				req := newRequest(t, context.Background(), c.method, "http://example.test/", c.key)
				reason, again := decide(req, nil, tc.err)
				assert.Equal(t, c.want, reason, "%s key=%q", c.method, c.key)
				assert.Equal(t, c.want != "", again, "%s key=%q", c.method, c.key)
			}
			_, _, ok := NetworkReason(tc.err)
			assert.Equal(t, tc.wantNetwrk, ok, "NetworkReason")
		})
	}
}

func TestDecideEdges(t *testing.T) {
	decide := Decider(true)
	t.Run("nil request", func(t *testing.T) {
		reason, again := decide(nil, nil, urlErr(opErr("dial", syscall.ECONNREFUSED)))
		assert.True(t, again, "a refused connection sent nothing")
		assert.Equal(t, ReasonConnRefused, reason)
		_, again = decide(nil, nil, urlErr(io.EOF))
		assert.False(t, again)
		_, again = decide(nil, &http.Response{StatusCode: http.StatusServiceUnavailable}, nil)
		assert.False(t, again)
	})
	t.Run("neither answer nor error", func(t *testing.T) {
		req := newRequest(t, context.Background(), http.MethodGet, "http://example.test/", "")
		reason, again := decide(req, nil, nil)
		assert.False(t, again)
		assert.Empty(t, reason)
	})
	t.Run("error wins over answer", func(t *testing.T) {
		req := newRequest(t, context.Background(), http.MethodGet, "http://example.test/", "")
		reason, again := decide(req, &http.Response{StatusCode: http.StatusServiceUnavailable}, urlErr(io.EOF))
		assert.True(t, again)
		assert.Equal(t, ReasonEOF, reason)
	})
	t.Run("NetworkReason nil", func(t *testing.T) {
		reason, anyMethod, ok := NetworkReason(nil)
		assert.Equal(t, "", reason)
		assert.False(t, anyMethod)
		assert.False(t, ok)
	})
}
