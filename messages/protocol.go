package messages

import (
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// TokenReply is the token actor's answer to NeedToken and TokenRejected: a token with the generation
// it belongs to, the error that ends the request's wait (ErrSessionExpired, ErrClosed,
// ErrRefreshFailed, each wrapping its cause), or, while a refresh runs, the Pending the requester
// parks on. Reply channels have room for one reply, so the token actor never blocks on a requester.
type TokenReply struct {
	Token string
	Auth  []string // {scheme + " " + Token}, made once per token and shared: read-only
	Gen   uint64
	Err   error
	// Wait, when not nil, parks the requester: the real answer is Wait's, once the refresh ends.
	Wait *Pending
	// Refresh is the span of the refresh that ended the wait (nil when none, or not traced), for the
	// requester's span to link to. Replies share it: it must not be modified.
	Refresh *trace.SpanContext
}

// Pending is what requesters parked behind a refresh wait for: the token actor makes one per
// refresh, hands it out in TokenReply.Wait, and resolves it once with the refresh's outcome, for
// everyone at the same time (one close of a channel, however many wait). It counts its waiters
// exactly: a requester that leaves before the outcome is not counted by Resolve, and one that tries to
// leave after it was counted is told so (and takes the outcome). It is the protocol's one value with
// behaviour: a future, safe for concurrent use.
type Pending struct {
	done  chan struct{}
	reply TokenReply
	state atomic.Int64 // waiters, plus resolvedBit once resolved
}

// resolvedBit marks a resolved Pending in its state; the bits below count the waiters.
const resolvedBit = int64(1) << 62

// NewPending returns an unresolved Pending.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Done is closed when the Pending is resolved.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Reply is the outcome; read it only after Done is closed.
func (p *Pending) Reply() TokenReply { return p.reply }

// Join counts a requester that waits. Only the token actor calls it, before Resolve.
func (p *Pending) Join() { p.state.Add(1) }

// Leave uncounts a requester that gives up (its context ended). It returns false when the Pending
// was already resolved: the requester was counted among those answered and must take the Reply
// (after Done).
func (p *Pending) Leave() bool {
	for {
		s := p.state.Load()
		if s&resolvedBit != 0 {
			return false
		}
		if p.state.CompareAndSwap(s, s-1) {
			return true
		}
	}
}

// Waiting is how many requesters wait now.
func (p *Pending) Waiting() int { return int(p.state.Load() &^ resolvedBit) }

// Resolve sets the outcome, releases every waiter and returns how many there were: exactly those
// that will receive rep. Only the token actor calls it, once.
func (p *Pending) Resolve(rep TokenReply) int {
	p.reply = rep
	n := p.state.Or(resolvedBit)
	close(p.done)
	return int(n &^ resolvedBit)
}

// Ask is one requester's question in flight to the token actor. It settles, exactly once, whether
// the actor parked the requester or the requester gave up first, so that a requester whose context
// ends before the actor reads its message is never counted as parked. Safe for concurrent use.
type Ask struct {
	state atomic.Int32 // askOpen, askParked or askGone
}

const (
	askOpen int32 = iota
	askParked
	askGone
)

// Park is the token actor's side: it reports whether the requester still waits, and if so it is
// parked from now on. A nil Ask always parks.
func (a *Ask) Park() bool { return a == nil || a.state.CompareAndSwap(askOpen, askParked) }

// Abandon is the requester's side: it reports whether it left before the actor parked it (the actor
// will then neither park nor count it). False means it was parked: its reply is on its way.
func (a *Ask) Abandon() bool { return a.state.CompareAndSwap(askOpen, askGone) }

// NeedToken asks for a usable access token. The token actor answers at once: with its token while it
// is valid, else with the Pending of the refresh that will bring one (starting that refresh if none
// runs), or with the error that ended the session.
type NeedToken struct {
	Reply    chan<- TokenReply  // buffered, capacity ≥ 1
	Ask      *Ask               // settles parking against the requester giving up; nil: always parks
	Deadline time.Time          // the requester's deadline (zero: none): a refresh retries no longer
	Trace    *trace.SpanContext // the requester's span, linked from a refresh it starts; nil when not traced
}

// TokenRejected reports that the API answered 401 to a request sent with the token of generation Gen.
// If Gen is still current the token actor starts one refresh (parking the requester); if a newer
// token exists already, it answers with that one and starts nothing. A nil Reply only reports.
type TokenRejected struct {
	Gen      uint64
	Reply    chan<- TokenReply
	Ask      *Ask               // as in NeedToken
	Deadline time.Time          // as in NeedToken
	Trace    *trace.SpanContext // the requester's span, linked from a refresh it starts; nil when not traced
}

// SetTokens replaces the credentials with ones the application obtained itself (a new login). It ends
// the expired state, starts a new generation and answers every parked requester with the new token.
// Done, if not nil, receives the outcome once the new tokens are in force and their save has ended:
// nil, an error wrapping ErrSaveFailed (the tokens are in force all the same), or ErrClosed after
// Shutdown. It needs room for one value.
type SetTokens struct {
	Tokens Tokens
	Done   chan<- error
}

// RefreshDue is sent by the token actor's own timer a configured skew before the token of generation
// Gen expires; it starts a proactive refresh if that token is still current.
type RefreshDue struct {
	Gen uint64
}

// IdleCheck is sent by the token actor's own idle timer (see actors.TokenConfig.Idle): if no
// refresh runs and every save has succeeded, the actor tells its owner it may be passivated.
type IdleCheck struct{}

// Reloaded is a Reload's outcome (actors.TokenConfig.Reload), sent by its goroutine to the token
// actor: OK with the pair another engine put in force.
type Reloaded struct {
	Tokens Tokens
	OK     bool
}

// Passivate asks the token actor to stop if it is at rest (no refresh under way, every save done):
// it answers on Reply (buffered) whether it did.
type Passivate struct {
	Reply chan<- bool
}

// RefreshDone carries a successful refresh back to the token actor's mailbox. Seq names the refresh
// it answers, so a late answer from an abandoned refresh is ignored.
type RefreshDone struct {
	Seq     uint64
	Tokens  Tokens
	SaveErr error // the save of Tokens failed (wraps ErrSaveFailed); they are used all the same
}

// RefreshFailed carries a failed refresh back to the token actor. Permanent is true when the session
// cannot recover without new credentials (the endpoint refused the refresh token).
type RefreshFailed struct {
	Seq       uint64
	Err       error
	Permanent bool
	// Rotated, when not empty, is a refresh token the endpoint issued in an answer that could not be
	// used: the one the actor holds is spent, so it keeps this one (already saved).
	Rotated string
}

// Shutdown asks the token actor to answer every parked requester with ErrClosed and stop its timer.
// A refresh in progress makes no further call but is not cut short: if it succeeds its result is
// still saved. Done is closed when the actor has closed.
type Shutdown struct {
	Done chan<- struct{}
}
