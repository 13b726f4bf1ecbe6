package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/resilientclient/resilient/messages"
)

// Inflight gives every logical request its context and counts the requests running, so that Close
// can end them all (parked, sending, or streaming a body) with ErrClosed and wait for them. It is
// safe for concurrent use; the zero value is ready.
//
// A request's context is the standard library's: context.WithCancelCause on the caller's context,
// cancelled with cause ErrClosed by a context.AfterFunc on the engine's life, which Close ends. A
// caller's context that can never be cancelled (context.Background, values on it) needs neither: the
// request's context is then the life itself, with the caller's values (lifeValues).
type Inflight struct {
	lifeOnce sync.Once
	life     context.Context         // ended with cause ErrClosed by Close
	endLife  context.CancelCauseFunc // ends life
	idle     chan struct{}           // a token after each count that fell once Close began

	closed   atomic.Bool
	running  atomic.Int64 // RoundTrip calls that have not returned
	watching atomic.Int64 // requests whose AfterFunc on life is neither stopped nor run
}

// init makes the life, once.
func (f *Inflight) init() {
	f.lifeOnce.Do(func() {
		f.life, f.endLife = context.WithCancelCause(context.Background())
		f.idle = make(chan struct{}, 1)
	})
}

// call is one tracked logical request. It also wraps the response body, so that finishing the body
// (EOF or Close) ends the call and releases its context; one allocation serves both.
type call struct {
	f      *Inflight
	rctx   context.Context         // the request's context
	cancel context.CancelCauseFunc // ends rctx
	stop   func() bool             // unregisters the AfterFunc that ends rctx on Close; nil for shared
	shared lifeValues              // rctx when the caller's context can never be cancelled
	body   io.ReadCloser
	// release, if set, ends what the request's answer was read under (an attempt's own context).
	release func()
	ended   atomic.Bool
}

// ctx is the request's context.
func (c *call) ctx() context.Context { return c.rctx }

// begin starts a logical request and makes its context, which ends when parent ends or when the
// engine closes (with cause ErrClosed). It fails with ErrClosed once closed.
func (f *Inflight) begin(parent context.Context) (*call, error) {
	f.init()
	f.running.Add(1)
	if f.closed.Load() {
		f.returned()
		return nil, messages.ErrClosed
	}
	c := &call{f: f}
	if parent.Done() == nil {
		// Only Close can end it: the life's end is the request's, with no allocation or
		// registration per request (contexts derived from it register with the life).
		c.shared = lifeValues{Context: f.life, values: parent}
		c.rctx = &c.shared
		return c, nil
	}
	// A Close from here on still reaches the request: the AfterFunc runs at once on an ended life,
	// and Close waits for it (watching).
	c.rctx, c.cancel = context.WithCancelCause(parent)
	f.watching.Add(1)
	c.stop = context.AfterFunc(f.life, c.closed)
	return c, nil
}

// closed ends the request's context with cause ErrClosed (a no-op when its parent ended first: a
// caller's deadline stays a deadline). Close runs it, through the AfterFunc.
func (c *call) closed() {
	c.cancel(messages.ErrClosed)
	c.f.settled(&c.f.watching)
}

// returned marks the RoundTrip of a call as returned (its body may live on).
func (f *Inflight) returned() { f.settled(&f.running) }

// settled takes one from n, and tells a waiting Close to count again.
func (f *Inflight) settled(n *atomic.Int64) {
	n.Add(-1)
	if f.closed.Load() {
		select {
		case f.idle <- struct{}{}:
		default:
		}
	}
}

// end releases c's context (and the attempt context its answer was read under). It is idempotent.
func (c *call) end() {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if c.release != nil {
		c.release()
	}
	if c.stop == nil {
		return // shared: nothing to release
	}
	if c.stop() {
		c.f.settled(&c.f.watching)
	}
	c.cancel(nil)
}

// lifeValues is the context of a request whose caller's context can never be cancelled: the
// engine's life (Done, Err, and through Value the cause ErrClosed) with the caller's values.
type lifeValues struct {
	context.Context                 // the engine's life
	values          context.Context // the caller's context
}

// Value is the caller's value for key, else the life's (context.Cause finds ErrClosed there).
func (c *lifeValues) Value(key any) any {
	if v := c.values.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

// closedByEngine reports whether the request's context ended because the engine closed.
func (c *call) closedByEngine() bool {
	return errors.Is(context.Cause(c.rctx), messages.ErrClosed)
}

// wrap makes c the body of resp, so that finishing the body ends the call. The wrapper offers what
// the body offers and no more: WriteTo when the body has it (io.Copy keeps that fast path, and
// io.CopyBuffer keeps using the caller's buffer when it has not), and Write when an upgraded
// connection's body is a ReadWriteCloser (closing the connection ends the call).
func (c *call) wrap(resp *http.Response) io.ReadCloser {
	c.body = resp.Body
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		return &upgradedBody{c: c, rwc: rwc}
	}
	if _, ok := resp.Body.(io.WriterTo); ok {
		return (*callWriterTo)(c)
	}
	return c
}

// Read reads the response body; at EOF the call ends. A read cut short by Close fails with an
// error that wraps ErrClosed.
func (c *call) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	switch {
	case err == io.EOF:
		c.end()
	case err != nil && c.closedByEngine():
		err = fmt.Errorf("%w (%w)", messages.ErrClosed, err)
	}
	return n, err
}

// Close closes the response body and ends the call.
func (c *call) Close() error {
	err := c.body.Close()
	c.end()
	return err
}

// callWriterTo is the wrapper of a body that has WriteTo.
type callWriterTo call

// Read is the call's Read.
func (c *callWriterTo) Read(p []byte) (int, error) { return (*call)(c).Read(p) }

// Close is the call's Close.
func (c *callWriterTo) Close() error { return (*call)(c).Close() }

// WriteTo writes the rest of the body to w through the body's own WriteTo; then the call ends, as at
// EOF. An error after Close wraps ErrClosed.
func (c *callWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := c.body.(io.WriterTo).WriteTo(w)
	switch {
	case err == nil:
		(*call)(c).end()
	case (*call)(c).closedByEngine():
		err = fmt.Errorf("%w (%w)", messages.ErrClosed, err)
	}
	return n, err
}

// upgradedBody is the body of a 101 answer: the upgraded connection, kept a ReadWriteCloser; closing
// it ends the call.
type upgradedBody struct {
	c   *call
	rwc io.ReadWriteCloser
}

// Read reads from the connection.
func (u *upgradedBody) Read(p []byte) (int, error) { return u.rwc.Read(p) }

// Write writes to the connection.
func (u *upgradedBody) Write(p []byte) (int, error) { return u.rwc.Write(p) }

// Close closes the connection and ends the call.
func (u *upgradedBody) Close() error {
	err := u.rwc.Close()
	u.c.end()
	return err
}

// Close refuses new requests, ends every running one with cause ErrClosed, and waits until every
// RoundTrip has returned and every request's context has ended, or ctx ends. Response bodies still
// held by callers fail their next read.
func (f *Inflight) Close(ctx context.Context) error {
	f.init()
	f.closed.Store(true) // before the life ends: a request begun from here on is refused
	f.endLife(messages.ErrClosed)
	for f.running.Load() > 0 || f.watching.Load() > 0 {
		select {
		case <-f.idle:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// Closed reports whether Close has been called.
func (f *Inflight) Closed() bool { return f.closed.Load() }
