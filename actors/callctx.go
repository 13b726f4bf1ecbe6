package actors

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/messages"
)

// callCtx is the context of a logical request: its caller's context (parent) for values and
// deadline, ending when the parent ends or when the engine closes (with cause ErrClosed).
//
// A parent that can never be cancelled (context.Background, or values on it, as http.NewRequest
// gives) needs no node: the request shares one of the engine's life contexts, which Close ends (the
// shared view). For a parent that can be cancelled, a context that merges two ends needs a
// cancellation node registered with the parent; context.WithCancelCause makes one per request, and
// net/http's transport then registers its own context of every send in that node's map: a cost per
// request that the same-run harness measured (bench/RESULTS.md, W1 on a cancellable context). Here
// instead:
//   - the node is taken only when something waits on the request (Done, or a context derived from
//     it, as net/http's transport derives one); until then the context reads its parent and the
//     engine's closed flag directly;
//   - requests in flight at once on the same parent share one node (counted references, listed in
//     Inflight by parent), so a pool of workers on one context pays for one registration, not one
//     per request.
//
// Its views: shared (the parent's values, a life's end; for good, when the parent can never be
// cancelled); fresh (the parent itself, until Close; Done takes the node); viaNode (the node's);
// viaParent (the request ended without a node, or its parent ended before Close: the parent's, so
// that nothing made from it later takes one); viaClosed (Done closed, Err Canceled, context.Cause
// ErrClosed). Leaving fresh is a compare-and-swap, and final: ending a request takes no lock.
type callCtx struct {
	parent context.Context
	life   context.Context // for the shared view: ended with cause ErrClosed by Close; nil otherwise
	f      *Inflight

	state atomic.Uint32 // a view below; node is set before state says viaNode
	mu    sync.Mutex    // one waiter takes the node; another would take a reference for nothing
	node  *ctxNode      // the node in use, once viaNode
}

// The states of a callCtx whose parent can be cancelled (one whose parent never can is the shared
// view for good: its life is set).
const (
	fresh uint32 = iota
	viaNode
	viaParent
	viaClosed
)

// view is what the context reads now; nil while fresh and the engine runs.
func (c *callCtx) view() context.Context {
	if c.life != nil { // set before the context is shared, never changed
		return (*sharedView)(c)
	}
	st := c.state.Load()
	if st == fresh {
		if !c.f.closed.Load() {
			return nil
		}
		// The engine closed before anything waited: settle for good (a later end must not undo it),
		// on the parent's own end if it came first (a caller's deadline stays a deadline).
		to := viaClosed
		if c.parent.Err() != nil {
			to = viaParent
		}
		c.state.CompareAndSwap(fresh, to)
		st = c.state.Load()
	}
	switch st {
	case viaNode:
		return c.node.ctx
	case viaClosed:
		return (*closedView)(c)
	}
	return c.parent
}

// Deadline is the parent's.
func (c *callCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done returns the node's channel, taking the node first if this is the first wait.
func (c *callCtx) Done() <-chan struct{} {
	if v := c.view(); v != nil {
		return v.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.view(); v != nil {
		return v.Done()
	}
	n := c.f.acquire(c.parent)
	if n == nil { // the engine closed meanwhile: settle as view does
		return c.view().Done()
	}
	c.node = n
	if !c.state.CompareAndSwap(fresh, viaNode) { // the request ended meanwhile
		n.release()
		return c.view().Done()
	}
	return n.ctx.Done()
}

// Err is the current view's.
func (c *callCtx) Err() error {
	if v := c.view(); v != nil {
		return v.Err()
	}
	return c.parent.Err()
}

// Value is the current view's (the parent's values in every view).
func (c *callCtx) Value(key any) any {
	if v := c.view(); v != nil {
		return v.Value(key)
	}
	return c.parent.Value(key)
}

// String names the context in panics and logs, as the context package's own contexts do.
func (c *callCtx) String() string { return "engine request context" }

// end is the request's end: its node reference is given back, or, if it never took one, the
// context becomes its parent's view (so that nothing made later from it takes a node).
//
// So after its request's end, a request's context follows its caller's context (it took no node),
// or ends (its node had no other user), or lives on until the caller's context ends or Close (its
// node serves requests still in flight). Nothing should wait on it once the request is done; while
// the request runs, it ends exactly when the caller's context ends or the engine closes.
func (c *callCtx) end() {
	if c.life != nil {
		return // the shared view holds nothing
	}
	if c.f.closed.Load() {
		c.view() // the engine closed first: settle as closed (or on the parent's end), for good
	}
	if c.state.CompareAndSwap(fresh, viaParent) {
		return
	}
	if c.state.Load() == viaNode {
		c.node.release()
	}
}

// ctxNode is one cancellation node: a context derived from a parent, shared by the requests in
// flight on that parent.
type ctxNode struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	refs   int // requests using it; guarded by shard.mu
	key    any // what it is listed under: the parent, or the node itself when the parent is no map key
	shard  *nodeShard
}

// nodeShard lists the nodes of some parents. Shards keep requests on different parents from
// meeting on one lock.
type nodeShard struct {
	mu     sync.Mutex
	closed bool // Close cancelled this shard's nodes: no new ones
	m      map[any]*ctxNode
}

const nodeShards = 32

var nodeSeed = maphash.MakeSeed()

// acquire returns the node for parent, shared when parent is a pointer (every context of the
// context package is; a pointer is always a usable map key, whereas a struct that compares may hold a
// value that cannot be hashed, or a NaN that never equals itself). It returns nil once Close reached
// the shard.
func (f *Inflight) acquire(parent context.Context) *ctxNode {
	var n *ctxNode // made only when no node is listed for parent
	var key any
	var s *nodeShard
	if t := reflect.TypeOf(parent); t != nil && t.Kind() == reflect.Pointer {
		key, s = parent, &f.nodes[maphash.Comparable(nodeSeed, parent)%nodeShards]
	} else {
		n = &ctxNode{}
		key, s = n, &f.nodes[rand.IntN(nodeShards)]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if listed := s.m[key]; listed != nil {
		listed.refs++
		return listed
	}
	if n == nil {
		n = &ctxNode{}
	}
	n.ctx, n.cancel = context.WithCancelCause(parent)
	n.refs, n.key, n.shard = 1, key, s
	if s.m == nil {
		s.m = make(map[any]*ctxNode)
	}
	s.m[key] = n
	return n
}

// release gives back one reference to n; the last one ends it (unregistering it from its parent).
func (n *ctxNode) release() {
	s := n.shard
	s.mu.Lock()
	n.refs--
	last := n.refs == 0
	if last && s.m[n.key] == n {
		delete(s.m, n.key)
	}
	s.mu.Unlock()
	if last {
		n.cancel(nil)
	}
}

// close cancels every node of the shard with cause ErrClosed and refuses new ones. The nodes stay
// listed until their requests give them back.
func (s *nodeShard) close() {
	s.mu.Lock()
	s.closed = true
	nodes := make([]*ctxNode, 0, len(s.m))
	for _, n := range s.m {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()
	for _, n := range nodes {
		n.cancel(messages.ErrClosed)
	}
}

// sharedView is a callCtx on a parent that can never be cancelled: the parent's values, and the
// life's end.
type sharedView callCtx

// Deadline is the parent's.
func (c *sharedView) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done is the life's: closed by Close.
func (c *sharedView) Done() <-chan struct{} { return c.life.Done() }

// Err is the life's.
func (c *sharedView) Err() error { return c.life.Err() }

// Value is the parent's value, else the life's: context.Cause finds the life's cause (ErrClosed)
// through it, and contexts derived from this one are registered with the life.
func (c *sharedView) Value(key any) any {
	if v := c.parent.Value(key); v != nil {
		return v
	}
	return c.life.Value(key)
}

// closedView is a fresh callCtx once the engine closed: it never took a node, so nothing waits on
// it that Close would have to wake.
type closedView callCtx

// closedChan is the Done channel of the closed view.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Deadline is the parent's.
func (c *closedView) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done is closed.
func (c *closedView) Done() <-chan struct{} { return closedChan }

// Err is context.Canceled (context.Cause says ErrClosed).
func (c *closedView) Err() error { return context.Canceled }

// Value is the parent's, except what context.Cause looks for, which a life (ended with ErrClosed)
// answers: a life holds no other value.
func (c *closedView) Value(key any) any {
	if v := c.f.lifeCtx().Value(key); v != nil {
		return v
	}
	return c.parent.Value(key)
}
