package actors

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/messages"
)

// Requests begun, waited on, derived from and ended on many goroutines while Close comes at a
// random moment: every request still open at Close ends with ErrClosed (whether it had taken a node
// or not), and once all have ended no node is left and no goroutine runs.
func TestCallContextsUnderConcurrentClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	for round := range 20 {
		var f Inflight
		parents := make([]context.Context, 4)
		stops := make([]context.CancelFunc, 4)
		for i := range parents {
			parents[i], stops[i] = context.WithCancel(context.Background())
		}
		var held sync.Map // *call → struct{}: begun and not ended before Close
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := 0; ; i++ {
					c, err := f.begin(parents[rng.IntN(len(parents))])
					if err != nil {
						assert.ErrorIs(t, err, messages.ErrClosed)
						return
					}
					switch rng.IntN(4) {
					case 0:
						_ = c.ctx().Done()
					case 1:
						d, cancel := context.WithCancel(c.ctx())
						_ = d.Done()
						cancel()
					case 2: // a wait racing the request's end
						wg.Add(1)
						go func() {
							defer wg.Done()
							_ = c.ctx().Done()
						}()
					}
					if i%7 == 3 {
						held.Store(c, struct{}{}) // left open until after Close
						f.returned()
						continue
					}
					c.end()
					f.returned()
				}
			}()
		}
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		require.NoError(t, f.Close(context.Background()))
		wg.Wait()
		held.Range(func(k, _ any) bool {
			c := k.(*call)
			select {
			case <-c.ctx().Done():
			default:
				t.Fatalf("round %d: a request open at Close was not ended", round)
			}
			assert.ErrorIs(t, context.Cause(c.ctx()), messages.ErrClosed)
			c.end()
			return true
		})
		assert.Zero(t, f.nodeCount(), "round %d", round)
		for _, stop := range stops {
			stop()
		}
	}
}

// A request the engine closed before anything waited on it stays closed after its end (its Done,
// Err and cause never go back); one whose caller's context had ended first keeps the caller's error.
func TestClosedViewIsFinal(t *testing.T) {
	var f Inflight
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	c, err := f.begin(parent)
	require.NoError(t, err)
	late, err := f.begin(parent)
	require.NoError(t, err)
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	timedOut, err := f.begin(expired)
	require.NoError(t, err)
	f.returned()
	f.returned()
	f.returned()
	require.NoError(t, f.Close(context.Background()))

	done := c.ctx().Done()
	assert.ErrorIs(t, c.ctx().Err(), context.Canceled)
	c.end()
	for _, ctx := range []context.Context{c.ctx(), late.ctx()} {
		assert.ErrorIs(t, ctx.Err(), context.Canceled)
		assert.ErrorIs(t, context.Cause(ctx), messages.ErrClosed)
		select {
		case <-ctx.Done():
		default:
			t.Fatal("Done not closed")
		}
	}
	assert.Equal(t, done, c.ctx().Done(), "the same channel after the end")
	derived, cancel := context.WithCancel(late.ctx())
	defer cancel()
	late.end()
	assert.ErrorIs(t, context.Cause(derived), messages.ErrClosed)

	assert.ErrorIs(t, timedOut.ctx().Err(), context.DeadlineExceeded, "the caller's deadline, not ErrClosed")
	assert.NotErrorIs(t, context.Cause(timedOut.ctx()), messages.ErrClosed)
	assert.Zero(t, f.nodeCount())
}

// An ended request never takes a node: nothing would give it back.
func TestEndedRequestTakesNoNode(t *testing.T) {
	var f Inflight
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	c, err := f.begin(parent)
	require.NoError(t, err)
	f.returned()
	c.end()
	d, cancel := context.WithCancel(c.ctx())
	defer cancel()
	require.NotNil(t, d.Done())
	assert.Zero(t, f.nodeCount())
	stop()
	<-d.Done() // it still follows the parent
}

// wrapCtx is a comparable struct context; holding a value that cannot be hashed, it cannot be a map
// key all the same.
type wrapCtx struct{ context.Context }

// A parent that is not a pointer gets a node of its own, without panicking on values that cannot be
// hashed, and gives it back.
func TestParentThatIsNoPointer(t *testing.T) {
	var f Inflight
	base, stop := context.WithCancel(context.Background())
	defer stop()
	parent := wrapCtx{notComparable{Context: base}}
	c, err := f.begin(parent)
	require.NoError(t, err)
	f.returned()
	assert.NotPanics(t, func() { _ = c.ctx().Done() })
	assert.Equal(t, 1, f.nodeCount())
	c.end()
	assert.Zero(t, f.nodeCount())
}

// writerToBody is a body that can only be read through WriteTo.
type writerToBody struct {
	t     *testing.T
	wrote bool
}

func (b *writerToBody) Read([]byte) (int, error) {
	b.t.Error("Read called: WriteTo was not used")
	return 0, io.EOF
}
func (b *writerToBody) WriteTo(w io.Writer) (int64, error) {
	b.wrote = true
	n, err := w.Write([]byte("payload"))
	return int64(n), err
}
func (b *writerToBody) Close() error { return nil }

// waitingTransport waits on the request's context as net/http's transport does (deriving one), then
// answers with body and status.
type waitingTransport struct {
	body   io.ReadCloser
	status int
	seen   *context.Context // if set, the context the request was sent with
}

func (w waitingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if w.seen != nil {
		*w.seen = req.Context()
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	_ = ctx.Done()
	return &http.Response{StatusCode: w.status, Body: w.body, Header: http.Header{}, Request: req}, nil
}

// io.Copy of a response body goes through the transport body's own WriteTo, and reading it whole
// ends the request (its node is given back).
func TestWriteToUsesTheBodysAndEnds(t *testing.T) {
	var f Inflight
	body := &writerToBody{t: t}
	r := &Requester{Base: waitingTransport{body: body, status: http.StatusOK}, Inflight: &f}
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	req, err := http.NewRequestWithContext(parent, http.MethodGet, "http://api.test/x", nil)
	require.NoError(t, err)
	resp, err := r.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, 1, f.nodeCount(), "the transport waited: a node")
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	require.NoError(t, err)
	assert.True(t, body.wrote)
	assert.Equal(t, "payload", buf.String())
	assert.Zero(t, f.nodeCount(), "read whole: the request ended")
}

// rwBody is an upgraded connection's body.
type rwBody struct{ io.Reader }

func (rwBody) Write(p []byte) (int, error) { return len(p), nil }
func (rwBody) Close() error                { return nil }

// A 101 answer's body stays a ReadWriteCloser, and closing the connection ends the request (its node
// given back, its context ended); until then Close reaches it.
func TestUpgradedConnectionEndsWhenClosed(t *testing.T) {
	for _, byEngine := range []bool{false, true} {
		var f Inflight
		var sent context.Context
		r := &Requester{Base: waitingTransport{body: rwBody{bytes.NewReader(nil)}, status: http.StatusSwitchingProtocols, seen: &sent}, Inflight: &f}
		parent, stop := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(parent, http.MethodGet, "http://api.test/ws", nil)
		require.NoError(t, err)
		resp, err := r.RoundTrip(req)
		require.NoError(t, err)
		rwc, isRW := resp.Body.(io.ReadWriteCloser)
		require.True(t, isRW)
		_, err = rwc.Write([]byte("hello"))
		require.NoError(t, err)
		assert.Equal(t, 1, f.nodeCount(), "the connection holds its node")
		require.NoError(t, sent.Err(), "the connection's context lives past RoundTrip")
		if byEngine {
			require.NoError(t, f.Close(context.Background()))
			assert.ErrorIs(t, context.Cause(sent), messages.ErrClosed, "Close reaches the open connection")
		}
		require.NoError(t, rwc.Close())
		assert.Zero(t, f.nodeCount(), "closed: given back")
		assert.ErrorIs(t, sent.Err(), context.Canceled, "closed: its context ended")
		stop()
	}
}

// A body without WriteTo gets a wrapper without it, so io.CopyBuffer keeps the caller's buffer
// (an io.WriterTo source makes it ignore the buffer); a body with WriteTo keeps it.
func TestWrapperOffersWhatTheBodyOffers(t *testing.T) {
	var f Inflight
	plain := &Requester{Base: waitingTransport{body: io.NopCloser(readerOnly{bytes.NewReader([]byte("x"))}), status: http.StatusOK}, Inflight: &f}
	req, err := http.NewRequest(http.MethodGet, "http://api.test/x", nil)
	require.NoError(t, err)
	resp, err := plain.RoundTrip(req)
	require.NoError(t, err)
	_, hasWriteTo := resp.Body.(io.WriterTo)
	assert.False(t, hasWriteTo)
	_, upgraded := resp.Body.(io.Writer)
	assert.False(t, upgraded)
	require.NoError(t, resp.Body.Close())
}

// readerOnly hides every method but Read.
type readerOnly struct{ io.Reader }

// Once Close reached a shard, no node is made there: one made then would never be cancelled.
func TestNoNodeAfterClose(t *testing.T) {
	var f Inflight
	require.NoError(t, f.Close(context.Background()))
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	assert.Nil(t, f.acquire(parent))
	assert.Nil(t, f.acquire(wrapCtx{parent}))
	assert.Zero(t, f.nodeCount())
}

// A wait that races the request's end (the node taken as the request ends) gives the node back.
func TestWaitRacingEndGivesTheNodeBack(t *testing.T) {
	var f Inflight
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	for i := range 20000 {
		c, err := f.begin(parent)
		require.NoError(t, err)
		f.returned()
		started, waited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(waited)
			close(started)
			_ = c.ctx().Done()
		}()
		<-started
		for range i % 64 { // end at a different moment of the wait each time
			runtime.Gosched()
		}
		c.end()
		<-waited
	}
	assert.Zero(t, f.nodeCount())
}
