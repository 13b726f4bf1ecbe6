package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/resilientclient/resilient/messages"
)

// inflightShards spreads the registry's lock over this many mutexes so concurrent requests rarely
// meet on one.
const inflightShards = 32

// Inflight tracks every logical request from its start until its response body is done, so that
// Close can cancel them all (parked, sending, or streaming a body) with ErrClosed. It is safe for
// concurrent use; the zero value is ready.
type Inflight struct {
	shards  [inflightShards]inflightShard
	running atomic.Int64 // RoundTrip calls that have not returned yet
	closed  atomic.Bool

	// lives end (with cause ErrClosed) when Close is called. Requests whose own context can never
	// be cancelled share one of them instead of a cancel context of their own, and are not listed
	// in a shard. There are several so that the contexts net/http derives from every request (it
	// registers each with its parent, under the parent's lock) do not all meet on one lock.
	lifeOnce sync.Once
	lives    [lifeShards]context.Context
	endLives [lifeShards]context.CancelCauseFunc
}

// lifeShards is how many life contexts requests that cannot be cancelled are spread over.
const lifeShards = 16

type inflightShard struct {
	mu     sync.Mutex // guards closed and the list
	closed bool
	head   *call
}

// call is one tracked logical request. It also wraps the response body, so that finishing the body
// (EOF or Close) ends the call and releases its context; one allocation serves both.
type call struct {
	ctx    context.Context
	cancel context.CancelCauseFunc // nil when ctx is the shared one
	shard  *inflightShard          // nil when ctx is the shared one
	prev   *call
	next   *call
	linked bool
	body   io.ReadCloser
	shared sharedCtx // ctx, for a request whose parent can never be cancelled
	// release, if set, ends what the request's answer was read under (an attempt's own context).
	release func()
	ended   atomic.Bool
}

// sharedCtx is the context of a request whose parent can never be cancelled (context.Background,
// or values on top of it, as http.NewRequest gives): the parent's values, and the registry's life
// for its end. Such a request needs no cancel context of its own (two allocations and a lock fewer
// on the hot path), and Close reaches it by ending the life it shares with the others.
type sharedCtx struct {
	context.Context                 // the parent: values, and never a Done channel
	life            context.Context // ends with cause ErrClosed on Close
}

func (c *sharedCtx) Done() <-chan struct{} { return c.life.Done() }
func (c *sharedCtx) Err() error            { return c.life.Err() }

// Value is the parent's value, else the life's: context.Cause finds the life's cause (ErrClosed)
// through it, and contexts derived from this one are cancelled with the life.
func (c *sharedCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.life.Value(key)
}

// lifeCtx returns the life context for the call c, made on first use.
func (f *Inflight) lifeCtx(c *call) context.Context {
	f.lifeOnce.Do(func() {
		for i := range f.lives {
			f.lives[i], f.endLives[i] = context.WithCancelCause(context.Background())
		}
	})
	return f.lives[spread(c, lifeShards)]
}

// spread picks one of n shards for c from its address: calls are allocated apart from each other,
// so their addresses spread them as well as a random number would, for nothing.
func spread(c *call, n int) int {
	return int(uintptr(unsafe.Pointer(c))>>7) % n
}

// begin registers a logical request and derives its context, which ends when parent ends or when
// the registry closes (with cause ErrClosed). It fails with ErrClosed once closed.
func (f *Inflight) begin(parent context.Context) (*call, error) {
	f.running.Add(1)
	if f.closed.Load() {
		f.running.Add(-1)
		return nil, messages.ErrClosed
	}
	if parent.Done() == nil {
		// Nothing can cancel the parent: the shared life is all this request needs. (Close ends
		// the life after setting closed, so a request that got past the check above still ends.)
		c := &call{}
		c.shared = sharedCtx{Context: parent, life: f.lifeCtx(c)}
		c.ctx = &c.shared
		return c, nil
	}
	ctx, cancel := context.WithCancelCause(parent)
	c := &call{ctx: ctx, cancel: cancel}
	c.shard = &f.shards[spread(c, inflightShards)]
	s := c.shard
	s.mu.Lock()
	if s.closed { // Close swept this shard already: this request must not start
		s.mu.Unlock()
		cancel(messages.ErrClosed)
		f.running.Add(-1)
		return nil, messages.ErrClosed
	}
	c.next = s.head
	if s.head != nil {
		s.head.prev = c
	}
	s.head, c.linked = c, true
	s.mu.Unlock()
	return c, nil
}

// returned marks the RoundTrip of a call as returned (its body may live on).
func (f *Inflight) returned() { f.running.Add(-1) }

// end unregisters c and releases its context. It is idempotent.
func (c *call) end() {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if c.release != nil {
		c.release()
	}
	s := c.shard
	if s == nil {
		return // the shared context: nothing of its own to release
	}
	s.mu.Lock()
	if c.linked {
		if c.prev != nil {
			c.prev.next = c.next
		} else {
			s.head = c.next
		}
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.prev, c.next, c.linked = nil, nil, false
	}
	s.mu.Unlock()
	c.cancel(nil)
}

// Read reads the response body; at EOF the call ends. A read cut short by Close fails with an
// error that wraps ErrClosed.
func (c *call) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	switch {
	case err == io.EOF:
		c.end()
	case err != nil && errors.Is(context.Cause(c.ctx), messages.ErrClosed):
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

// Close refuses new requests, cancels every tracked one with cause ErrClosed, and waits until every
// RoundTrip has returned or ctx ends. Response bodies still held by callers fail their next read.
func (f *Inflight) Close(ctx context.Context) error {
	f.closed.Store(true)
	f.lifeCtx(nil)
	for _, end := range f.endLives {
		end(messages.ErrClosed)
	}
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		s.closed = true
		for c := s.head; c != nil; c = c.next {
			c.cancel(messages.ErrClosed)
		}
		s.mu.Unlock()
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

// Running says how many RoundTrip calls have not returned.
func (f *Inflight) Running() int64 { return f.running.Load() }
