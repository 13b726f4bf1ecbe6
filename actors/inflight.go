package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/messages"
)

// Inflight gives every logical request its context and counts the requests running, so that Close
// can end them all (parked, sending, or streaming a body) with ErrClosed and wait for them. It is
// safe for concurrent use; the zero value is ready.
//
// It keeps no list of requests: a request's context (callCtx) reads the closed flag itself until
// something waits on it; from then on it waits through a cancellation node, and Close cancels every
// node; requests on contexts that can never be cancelled wait on one of the lives, which Close ends.
type Inflight struct {
	running atomic.Int64 // RoundTrip calls that have not returned yet
	closed  atomic.Bool

	// lives end (with cause ErrClosed) when Close is called. Requests whose own context can never
	// be cancelled share one of them instead of a cancellation node. There are several so that the
	// contexts net/http derives from every request (it registers each with its parent, under the
	// parent's lock) do not all meet on one lock.
	lifeOnce sync.Once
	lives    [lifeShards]context.Context
	endLives [lifeShards]context.CancelCauseFunc

	// nodes are the cancellation nodes of requests on parents that can be cancelled (callCtx).
	nodes [nodeShards]nodeShard
}

// lifeShards is how many life contexts requests that cannot be cancelled are spread over.
const lifeShards = 16

// call is one tracked logical request. It also wraps the response body, so that finishing the body
// (EOF or Close) ends the call and releases its context; one allocation serves both.
type call struct {
	own  callCtx // the request's context
	body io.ReadCloser
	// release, if set, ends what the request's answer was read under (an attempt's own context).
	release func()
	ended   atomic.Bool
	auth    [1]string // the first send's Authorization value slice (see authValues)
}

// ctx is the request's context.
func (c *call) ctx() context.Context { return &c.own }

// lifeCtx returns one of the life contexts, picked at random, made on first use.
func (f *Inflight) lifeCtx() context.Context {
	f.lifeOnce.Do(func() {
		for i := range f.lives {
			f.lives[i], f.endLives[i] = context.WithCancelCause(context.Background())
		}
	})
	return f.lives[rand.IntN(lifeShards)]
}

// begin starts a logical request and makes its context, which ends when parent ends or when the
// engine closes (with cause ErrClosed). It fails with ErrClosed once closed.
func (f *Inflight) begin(parent context.Context) (*call, error) {
	f.running.Add(1)
	if f.closed.Load() {
		f.running.Add(-1)
		return nil, messages.ErrClosed
	}
	// A Close from here on still reaches the request: a fresh context reads the closed flag, nodes
	// are made in shards that Close marks, and the lives end after the flag is set.
	c := &call{}
	c.own.parent, c.own.f = parent, f
	if parent.Done() == nil { // nothing can cancel the parent: a life is all it needs
		c.own.life = f.lifeCtx()
	}
	return c, nil
}

// returned marks the RoundTrip of a call as returned (its body may live on).
func (f *Inflight) returned() { f.running.Add(-1) }

// end releases c's context (and the attempt context its answer was read under). It is idempotent.
func (c *call) end() {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if c.release != nil {
		c.release()
	}
	c.own.end()
}

// closedByEngine reports whether the request's context ended because the engine closed.
func (c *call) closedByEngine() bool {
	return errors.Is(context.Cause(&c.own), messages.ErrClosed)
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
// RoundTrip has returned or ctx ends. Response bodies still held by callers fail their next read.
func (f *Inflight) Close(ctx context.Context) error {
	// The lives first: a fresh context that reads the flag below finds ErrClosed as its cause.
	f.lifeCtx()
	for _, end := range f.endLives {
		end(messages.ErrClosed)
	}
	f.closed.Store(true)
	for i := range f.nodes {
		f.nodes[i].close()
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for f.running.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// Closed reports whether Close has been called.
func (f *Inflight) Closed() bool { return f.closed.Load() }
