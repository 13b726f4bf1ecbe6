package actors

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/messages"
)

// The send stage: one physical send under the attempt timeout, traced, its errors typed; and what
// happens to the answers the request path does not return.

// send makes one physical send, traced as one CLIENT span that carries its trace context to the
// server. With an attempt timeout, the send must have its response headers within it; the body may
// take longer (it is bound to the logical request's context only).
func (r *Requester) send(ctx context.Context, req *http.Request, st *attemptState) (*http.Response, error) {
	st.sends++
	var sp telemetry.Send
	ctx = st.tel.StartSend(ctx, req, st.sends-1, &sp)
	if sp.Rebind() {
		req = req.WithContext(ctx)
	}
	st.tel.Inject(ctx, req.Header) // if it injects, prepare gave this request a header map of its own
	ended := false
	defer func() {
		if !ended { // the transport panicked: the span still ends (the panic goes on to logical)
			sp.End(ctx, req, nil, errTransportPanicked, time.Now())
		}
	}()
	resp, err, raw, release := r.roundTrip(ctx, req)
	if st.tel.Clocked() { // else nothing needs the time of the answer (a retry reads the clock)
		st.lastEnd = time.Now()
	}
	ended = true
	sp.End(ctx, req, resp, raw, st.lastEnd)
	st.keep(release)
	return resp, err
}

// errTransportPanicked is what a send span records when the transport panicked.
var errTransportPanicked = errors.New("engine: the transport panicked")

// keep holds release, the end of the context of the send whose answer may be the caller's (its
// body is read under it), releasing the previous one's: only one answer of a logical request is
// ever the caller's. The logical request's end calls the last one.
func (st *attemptState) keep(release func()) {
	if st.release != nil {
		st.release()
	}
	st.release = release
}

// roundTrip sends req under the attempt timeout, if any. raw is the transport's own error, err what
// the request path makes of it; release, when not nil, ends the attempt's own context once its
// answer's body is done with.
func (r *Requester) roundTrip(ctx context.Context, req *http.Request) (resp *http.Response, err, raw error, release func()) {
	d := time.Duration(0)
	if r.Supervisor != nil {
		d = r.Supervisor.policy.AttemptTimeout
	}
	if d <= 0 {
		resp, err := r.Base.RoundTrip(req)
		raw = err
		if err != nil && ctx.Err() == nil {
			err = &networkError{err: err}
		}
		return resp, err, raw, nil
	}
	actx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d, func() { cancel(errAttemptTimeout) })
	resp, err = r.Base.RoundTrip(req.WithContext(actx))
	raw = err
	if t.Stop() {
		if err != nil {
			cancel(nil)
			if ctx.Err() == nil {
				err = &networkError{err: err}
			}
			return resp, err, raw, nil
		}
		// On success actx lives as long as the body, which is read under it: the logical request
		// releases it when it ends (the shared context of a request that cannot be cancelled
		// would otherwise keep it until Close).
		return resp, err, raw, func() { cancel(nil) }
	}
	// The timer fired: this attempt is over, whatever came back.
	if err == nil {
		discard(resp)
	}
	cancel(nil)
	if ctx.Err() != nil {
		return nil, ctxErr(ctx), ctxErr(ctx), nil
	}
	err = &AttemptTimeoutError{After: d}
	return nil, err, err, nil
}

// errAttemptTimeout is the cause an attempt's context ends with when its timeout fires.
var errAttemptTimeout = errors.New("engine: attempt timed out")

// AttemptTimeoutError: an attempt had no response headers within the policy's AttemptTimeout. It is a
// net.Error whose Timeout is true, so the retry decision treats it as any other timeout, and
// errors.Is finds messages.ErrAttemptTimeout in it.
type AttemptTimeoutError struct {
	After time.Duration
}

// Error says the attempt timed out, and after how long.
func (e *AttemptTimeoutError) Error() string {
	return "engine: no response headers within the attempt timeout of " + e.After.String()
}

// Timeout is true: the attempt timed out.
func (e *AttemptTimeoutError) Timeout() bool { return true }

// Temporary is true: another attempt may succeed. (Part of net.Error.)
func (e *AttemptTimeoutError) Temporary() bool { return true }

// Is makes errors.Is(err, messages.ErrAttemptTimeout) and errors.Is(err, messages.ErrTimeout) true.
func (e *AttemptTimeoutError) Is(target error) bool {
	return target == messages.ErrAttemptTimeout || target == messages.ErrTimeout
}

// networkError marks an error of the underlying transport (nothing or no whole answer came back):
// errors.Is finds messages.ErrNetwork in it, and messages.ErrTimeout when it is a timeout. Its text
// is the transport's own; errors.As still finds what it wraps (*net.OpError, syscall errors, ...).
type networkError struct {
	err error
}

func (e *networkError) Error() string { return e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }
func (e *networkError) Is(target error) bool {
	if target == messages.ErrNetwork {
		return true
	}
	var ne net.Error
	return target == messages.ErrTimeout && errors.As(e.err, &ne) && ne.Timeout()
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (io.ReadCloser, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, nil
	}
	return req.GetBody()
}

// discard closes an answer we will not return. It first reads what of its body has already
// arrived, so that its connection can be reused, but at most drainBytes and for at most drainWait:
// a server that sends a few bytes of an error and stalls must not hold the retry (and the caller's
// deadline) hostage; closing the body early only costs the connection.
func discard(resp *http.Response) {
	t := time.AfterFunc(drainWait, func() { _ = resp.Body.Close() })
	_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
	if t.Stop() {
		_ = resp.Body.Close()
	} // else the timer closed it
}

// What discard reads of an unwanted body before it gives up on the connection: an error page
// that has already arrived (the common case) takes well under either bound.
const (
	drainBytes = 64 << 10
	drainWait  = 50 * time.Millisecond
)

func closeBody(req *http.Request) { closeReader(req.Body) }

func closeReader(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}
