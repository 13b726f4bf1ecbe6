package actors

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/messages"
)

// Requests begun, waited on, derived from and ended on many goroutines while Close comes at a
// random moment: every request still open at Close ends with ErrClosed, and once all have ended
// nothing is left to end and no goroutine runs.
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
		assert.Zero(t, f.Watching(), "round %d", round)
		for _, stop := range stops {
			stop()
		}
	}
}

// Close cancels every request still running with ErrClosed, whatever its parent context, before it
// returns; requests that ended hold nothing; and Close refuses new ones.
func TestInflightCloseCancelsAndRefuses(t *testing.T) {
	cancellable, stop := context.WithCancel(context.Background())
	defer stop()
	type key struct{}
	for _, tc := range []struct {
		name   string
		parent context.Context
	}{
		{"cancellable parent", cancellable},
		{"background parent", context.Background()},
		{"values on background", context.WithValue(context.Background(), key{}, "v")},
	} {
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
			for _, c := range calls[50:] {
				assert.NoError(t, c.ctx().Err(), "running")
				assert.Equal(t, tc.parent.Value(key{}), c.ctx().Value(key{}), "the caller's values")
			}
			if tc.parent.Done() != nil {
				assert.Equal(t, int64(50), f.Watching(), "the running requests wait for Close")
			}
			require.NoError(t, f.Close(context.Background()))
			for i, c := range calls[50:] {
				assert.ErrorIs(t, context.Cause(c.ctx()), messages.ErrClosed, "call %d", 50+i)
				assert.ErrorIs(t, c.ctx().Err(), context.Canceled)
				select {
				case <-c.ctx().Done():
				default:
					t.Errorf("call %d: Done not closed when Close returned", 50+i)
				}
			}
			for _, c := range calls[50:] {
				c.end()
			}
			assert.Zero(t, f.Watching(), "nothing left to end")
			_, err := f.begin(tc.parent)
			assert.ErrorIs(t, err, messages.ErrClosed)
			assert.Zero(t, f.Running())
		})
	}
}

// The caller's end reaches every request on its context, and contexts derived from them, with the
// caller's cause; a later Close does not change it.
func TestInflightFollowsTheCaller(t *testing.T) {
	defer goleak.VerifyNone(t)
	parent, cancel := context.WithCancelCause(context.Background())
	var f Inflight
	a, err := f.begin(parent)
	require.NoError(t, err)
	b, err := f.begin(parent)
	require.NoError(t, err)
	derived, stopDerived := context.WithCancel(b.ctx())
	defer stopDerived()
	a.end()
	assert.NoError(t, b.ctx().Err(), "another request's end does not end b")
	cause := errors.New("caller gave up")
	cancel(cause)
	for _, d := range []<-chan struct{}{b.ctx().Done(), derived.Done()} {
		select {
		case <-d:
		case <-time.After(5 * time.Second):
			t.Fatal("the caller's end did not reach the request")
		}
	}
	f.returned()
	f.returned()
	require.NoError(t, f.Close(context.Background()))
	assert.ErrorIs(t, context.Cause(b.ctx()), cause)
	assert.ErrorIs(t, context.Cause(derived), cause)
	b.end()
	assert.Zero(t, f.Watching())
}

// A request the engine closed stays closed after its end (its Done, Err and cause never go back);
// one whose caller's context had ended first keeps the caller's error.
func TestClosedIsFinal(t *testing.T) {
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
	assert.Zero(t, f.Watching())
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
// ends the request.
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
	assert.Equal(t, int64(1), f.Watching(), "the body holds the request open")
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	require.NoError(t, err)
	assert.True(t, body.wrote)
	assert.Equal(t, "payload", buf.String())
	assert.Zero(t, f.Watching(), "read whole: the request ended")
}

// rwBody is an upgraded connection's body.
type rwBody struct{ io.Reader }

func (rwBody) Write(p []byte) (int, error) { return len(p), nil }
func (rwBody) Close() error                { return nil }

// A 101 answer's body stays a ReadWriteCloser, and closing the connection ends the request (its
// context ended); until then Close reaches it.
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
		assert.Equal(t, int64(1), f.Watching(), "the connection holds the request open")
		require.NoError(t, sent.Err(), "the connection's context lives past RoundTrip")
		if byEngine {
			require.NoError(t, f.Close(context.Background()))
			assert.ErrorIs(t, context.Cause(sent), messages.ErrClosed, "Close reaches the open connection")
		}
		require.NoError(t, rwc.Close())
		assert.Zero(t, f.Watching(), "closed: the request ended")
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
