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
	Auth  []string // {"Bearer " + Token}, made once per token and shared: read-only
	Gen   uint64
	Err   error
	// Wait, when not nil, parks the requester: the real answer is Wait's, once the refresh ends.
	Wait *Pending
	// Refresh is the span of the refresh that ended the wait (nil when none, or not traced), for the
	// requester's span to link to. Replies share it: it must not be modified.
	Refresh *trace.SpanContext
}

// Pending is what requesters parked behind a refresh wait for: the token actor makes one per
// refresh it is asked to wait for, hands it out in TokenReply.Wait, and resolves it once with the
// refresh's outcome, for everyone at the same time (one close of a channel, however many wait). It
// is the protocol's one value with behaviour: a future, safe for concurrent use.
type Pending struct {
	done    chan struct{}
	reply   TokenReply
	waiters atomic.Int64
}

// NewPending returns an unresolved Pending.
func NewPending() *Pending { return &Pending{done: make(chan struct{})} }

// Done is closed when the Pending is resolved.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Reply is the outcome; read it only after Done is closed.
func (p *Pending) Reply() TokenReply { return p.reply }

// Join counts a requester that waits.
func (p *Pending) Join() { p.waiters.Add(1) }

// Leave uncounts a requester that gave up (its context ended).
func (p *Pending) Leave() { p.waiters.Add(-1) }

// Waiting is how many requesters wait now.
func (p *Pending) Waiting() int { return int(p.waiters.Load()) }

// Resolve sets the outcome and releases every waiter. Only the token actor calls it, once.
func (p *Pending) Resolve(rep TokenReply) {
	p.reply = rep
	close(p.done)
}

// NeedToken asks for a usable access token. The token actor answers at once: with its token while it
// is valid, else with the Pending of the refresh that will bring one (starting that refresh if none
// runs), or with the error that ended the session.
type NeedToken struct {
	Reply chan<- TokenReply  // buffered, capacity ≥ 1
	Trace *trace.SpanContext // the requester's span, linked from a refresh it starts; nil when not traced
}

// TokenRejected reports that the API answered 401 to a request sent with the token of generation Gen.
// If Gen is still current the token actor starts one refresh (parking the requester); if a newer
// token exists already, it answers with that one and starts nothing. A nil Reply only reports.
type TokenRejected struct {
	Gen   uint64
	Reply chan<- TokenReply
	Trace *trace.SpanContext // the requester's span, linked from a refresh it starts; nil when not traced
}

// SetTokens replaces the credentials with ones the application obtained itself (a new login). It ends
// the expired state, starts a new generation and answers every parked requester with the new token.
// Done, if not nil, receives nil once the new tokens are in force (ErrClosed after Shutdown); it
// needs room for one value.
type SetTokens struct {
	Tokens Tokens
	Done   chan<- error
}

// RefreshDue is sent by the token actor's own timer a configured skew before the token of generation
// Gen expires; it starts a proactive refresh if that token is still current.
type RefreshDue struct {
	Gen uint64
}

// RefreshDone carries a successful refresh back to the token actor's mailbox. Seq names the refresh
// it answers, so a late answer from an abandoned refresh is ignored.
type RefreshDone struct {
	Seq    uint64
	Tokens Tokens
}

// RefreshFailed carries a failed refresh back to the token actor. Permanent is true when the session
// cannot recover without new credentials (the endpoint refused the refresh token).
type RefreshFailed struct {
	Seq       uint64
	Err       error
	Permanent bool
}

// Shutdown asks the token actor to answer every parked requester with ErrClosed, stop its timers and
// abandon any refresh in progress. Done is closed when that is finished.
type Shutdown struct {
	Done chan<- struct{}
}

// TokenRefreshed is published after a refresh succeeded and the new pair was stored.
type TokenRefreshed struct {
	Gen       uint64    // the generation of the new access token
	Expiry    time.Time // zero when unknown
	Proactive bool      // started before expiry by the timer, rather than by a 401 or an expired token
	Released  int       // parked requesters answered with the new token
	Duration  time.Duration
}

// SessionExpired is published once when the session ends: the refresh was refused, or there was no
// refresh token to try. Err wraps the cause and never contains a token.
type SessionExpired struct {
	Err    error
	Failed int // parked requesters answered with ErrSessionExpired
}

// TokensReplaced is published when the application supplied new credentials with SetTokens.
type TokensReplaced struct {
	Gen uint64
}
