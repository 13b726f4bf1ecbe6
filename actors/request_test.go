package actors

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

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

// Close cancels every request still running with ErrClosed, whatever its parent context and
// whether or not anything waited on it yet (a request on a parent that can be cancelled takes a
// cancellation node only when waited on; one on a parent that never can shares the registry's
// life); requests that ended hold nothing; and Close refuses new ones.
func TestInflightCloseCancelsAndRefuses(t *testing.T) {
	cancellable, stop := context.WithCancel(context.Background())
	defer stop()
	for _, tc := range []struct {
		name   string
		parent context.Context
		wait   bool // call Done on each request first, as a transport does
	}{
		{"cancellable parent, waited on", cancellable, true},
		{"cancellable parent, never waited on", cancellable, false},
		{"cancellable parent that is no map key, waited on", notComparable{Context: cancellable}, true},
		{"background parent", context.Background(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Inflight
			calls := make([]*call, 0, 100)
			for range 100 {
				c, err := f.begin(tc.parent)
				require.NoError(t, err)
				if tc.wait {
					require.NotNil(t, c.ctx().Done())
				}
				calls = append(calls, c)
			}
			for _, c := range calls[:50] {
				c.end()
			}
			for range 100 {
				f.returned()
			}
			for _, c := range calls[50:] {
				assert.NoError(t, c.ctx().Err(), "running")
			}
			require.NoError(t, f.Close(context.Background()))
			for i, c := range calls[50:] {
				assert.ErrorIs(t, context.Cause(c.ctx()), messages.ErrClosed, "call %d", 50+i)
				assert.ErrorIs(t, c.ctx().Err(), context.Canceled)
				select {
				case <-c.ctx().Done():
				default:
					t.Errorf("call %d: Done not closed after Close", 50+i)
				}
			}
			for _, c := range calls[50:] {
				c.end()
			}
			assert.Zero(t, f.nodeCount(), "every node released")
			_, err := f.begin(tc.parent)
			assert.ErrorIs(t, err, messages.ErrClosed)
			assert.Zero(t, f.Running())
		})
	}
}

// nodeCount is how many cancellation nodes are listed.
func (f *Inflight) nodeCount() int {
	n := 0
	for i := range f.nodes {
		s := &f.nodes[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// notComparable is a context type that cannot be a map key.
type notComparable struct {
	context.Context
	_ []int
}

// Requests in flight on one parent share one cancellation node, made when the first waits and
// released with the last; a parent that cannot be a map key gets a node per request (listed all the
// same); the parent's end reaches every request, derived contexts included, and values pass through.
func TestInflightNodesShareAndFollowTheParent(t *testing.T) {
	type key struct{}
	for _, tc := range []struct {
		name   string
		shared bool
		wrap   func(context.Context) context.Context
	}{
		{"comparable parent", true, func(c context.Context) context.Context { return c }},
		{"parent that is not comparable", false, func(c context.Context) context.Context { return notComparable{Context: c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			base, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
			parent := tc.wrap(base)
			var f Inflight
			defer func() { require.NoError(t, f.Close(context.Background())) }()
			a, err := f.begin(parent)
			require.NoError(t, err)
			b, err := f.begin(parent)
			require.NoError(t, err)
			defer func() { f.returned(); f.returned() }()
			assert.Equal(t, "v", a.ctx().Value(key{}), "values before any wait")
			assert.Zero(t, f.nodeCount(), "no node before anything waits")
			require.NotNil(t, a.ctx().Done())
			db := b.ctx().Done()
			assert.Equal(t, "v", a.ctx().Value(key{}), "values through the node")
			if tc.shared {
				assert.Same(t, a.own.node, b.own.node)
				assert.Equal(t, 1, f.nodeCount())
			} else {
				assert.NotSame(t, a.own.node, b.own.node)
				assert.Equal(t, 2, f.nodeCount(), "listed apart, so that Close still finds them")
			}
			derived, stopDerived := context.WithCancel(b.ctx())
			defer stopDerived()
			a.end()
			assert.NoError(t, b.ctx().Err(), "b still holds the node")
			cause := errors.New("caller gave up")
			cancel(cause)
			for _, d := range []<-chan struct{}{db, derived.Done()} {
				select {
				case <-d:
				case <-time.After(5 * time.Second):
					t.Fatal("the parent's end did not reach the request")
				}
			}
			assert.ErrorIs(t, b.ctx().Err(), context.Canceled)
			assert.ErrorIs(t, context.Cause(b.ctx()), cause)
			assert.ErrorIs(t, context.Cause(derived), cause)
			b.end()
			assert.Zero(t, f.nodeCount())
		})
	}
}

// A request on a context that can never be cancelled keeps its parent's values.
func TestInflightSharedContextKeepsValues(t *testing.T) {
	type key struct{}
	var f Inflight
	c, err := f.begin(context.WithValue(context.Background(), key{}, "v"))
	require.NoError(t, err)
	assert.Equal(t, "v", c.ctx().Value(key{}))
	assert.NotNil(t, c.ctx().Done(), "it can be cancelled: by Close")
	derived, cancel := context.WithCancel(c.ctx())
	defer cancel()
	f.returned()
	require.NoError(t, f.Close(context.Background()))
	assert.ErrorIs(t, context.Cause(derived), messages.ErrClosed, "contexts derived from it end with it")
}

// abortingBody blocks in Read until its request's context ends, then fails with an error of its own
// that says nothing of why: what a transport that does not pass context causes on would return.
type abortingBody struct{ ctx context.Context }

func (b abortingBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, errors.New("stream aborted")
}
func (b abortingBody) Close() error { return nil }

// abortingTransport answers 200 with an abortingBody; with writerTo, the body also has WriteTo.
type abortingTransport struct{ writerTo bool }

type abortingWriterTo struct{ abortingBody }

func (b abortingWriterTo) WriteTo(io.Writer) (int64, error) {
	_, err := b.Read(nil)
	return 0, err
}

func (a abortingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body io.ReadCloser = abortingBody{req.Context()}
	if a.writerTo {
		body = abortingWriterTo{abortingBody{req.Context()}}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: body, Header: http.Header{}, Request: req}, nil
}

// A body read cut short by Close fails with an error that wraps ErrClosed even when the transport's
// own error does not say why, whether read with Read or with WriteTo (io.Copy), on any context.
func TestBodyCutByCloseSaysErrClosed(t *testing.T) {
	cancellable, stop := context.WithCancel(context.Background())
	defer stop()
	for _, ctx := range []context.Context{context.Background(), cancellable} {
		for _, writerTo := range []bool{false, true} {
			for _, read := range []func(io.Reader) error{
				func(r io.Reader) error { _, err := io.ReadAll(r); return err },
				func(r io.Reader) error { _, err := io.Copy(&bytes.Buffer{}, r); return err },
			} {
				var f Inflight
				r := &Requester{Base: abortingTransport{writerTo: writerTo}, Inflight: &f}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/stream", nil)
				require.NoError(t, err)
				resp, err := r.RoundTrip(req)
				require.NoError(t, err)
				go func() {
					time.Sleep(10 * time.Millisecond)
					_ = f.Close(context.Background())
				}()
				err = read(resp.Body)
				assert.ErrorIs(t, err, messages.ErrClosed, "writerTo %v", writerTo)
				assert.ErrorContains(t, err, "stream aborted", "the transport's own error is kept")
				require.NoError(t, resp.Body.Close())
			}
		}
	}
}
