package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/messages"
)

// RefreshFunc trades the current credentials for new ones. ctx carries the refresh timeout; it is
// not cancelled because the request that triggered the refresh went away, nor by Close until
// Close's own deadline.
//
// retry.Classify decides what an error means: one wrapping messages.ErrSessionExpired, or a
// definitive answer of the token endpoint (invalid_grant), ends the session; any other is passing
// (the waiting requests get ErrRefreshFailed and the credentials are kept), and the passing failures
// it names (5xx, 429, timeouts, network, malformed answers) are retried while requests wait.
type RefreshFunc func(ctx context.Context, current messages.Tokens) (messages.Tokens, error)

// DefaultMinRefreshInterval is the floor on a refreshed token's lifetime and the least time between
// the start of a refresh and the next proactive one (which still comes before the token's expiry,
// at nine tenths of its life at the latest): a token endpoint that answers expires_in 0.01 (or 1)
// is not called in a loop. A token refreshed with a shorter expires_in is used for this long (a 401
// for it still starts a refresh at once).
const DefaultMinRefreshInterval = time.Second

// TokenEvents receives what the token actor tells the application. Its methods are called on the
// actor's goroutine and must not block; a panic in one is ignored.
type TokenEvents interface {
	// TokenRefreshed: a refresh installed generation gen, released released parked requests, and its
	// save has ended (SaveFailed came first if it failed).
	TokenRefreshed(gen uint64, expiry time.Time, proactive bool, released int, took time.Duration)
	// SessionExpired: the session ended with err (wrapping ErrSessionExpired); failed parked requests
	// got it.
	SessionExpired(err error, failed int)
	// TokensReplaced: the application's SetTokens installed generation gen.
	TokensReplaced(gen uint64)
	// SaveFailed: generation gen could not be saved (err wraps ErrSaveFailed); it is used from memory.
	SaveFailed(gen uint64, err error)
}

// TokenConfig configures the token actor.
type TokenConfig struct {
	// Store holds the credentials: the actor loads them from it whenever it (re)starts, and saves
	// every new pair to it. Required; seed it with the first credentials.
	Store   TokenStore
	Refresh RefreshFunc // nil: no refresh; a rejected or expired token ends the session
	// RequiresRefreshToken: Refresh cannot work without a refresh token (true for the built-in
	// formats), so a session without one expires instead of calling it.
	RequiresRefreshToken bool
	RefreshTimeout       time.Duration // bounds one refresh call, each store call, and the background retries of a failed save; must be > 0
	Supervisor           *Supervisor   // retries refresh calls that fail transiently; nil: one call
	RefreshHost          string        // the token endpoint's host[:port], for the retry budget and telemetry; "" when unknown
	Skew                 time.Duration // refresh this long before expiry (at most half the token's lifetime); ≤ 0: never proactively
	MinInterval          time.Duration // see DefaultMinRefreshInterval; ≤ 0: that default
	Events               TokenEvents   // nil: none
	Logger               *slog.Logger
	Telemetry            *telemetry.T // spans and metrics of refreshes and parked requests; nil: none
	Name                 string       // the actor's name in its system, unique there; "": one of protoactor's making

	// Gate bounds the refresh calls in flight across every token actor that shares it: a call
	// takes a slot (waiting within its timeout) and gives it back when it returns. nil: no bound.
	Gate chan struct{}

	// Idle and OnIdle passivate an idle actor: every Idle, if no refresh runs and the store holds
	// the credentials in force, the actor calls OnIdle, which decides whether requests still use it
	// and, if not, stops it (the next use starts a new one, loaded from the store). OnIdle runs on
	// the actor's goroutine and must not block. Idle ≤ 0 or a nil OnIdle: never.
	Idle   time.Duration
	OnIdle func()

	// Reload, when set, reads credentials another engine put in force in a shared store (cluster
	// mode): after the session ended, a request prompts a Reload (at most one per MinInterval), and
	// a pair it returns (ok) is put in force without a save, ending the expired state. nil: an ended
	// session lasts until SetTokens.
	Reload func(ctx context.Context) (t messages.Tokens, ok bool, err error)

	// FirstGen is the generation the actor counts on from: the last of an earlier incarnation of the
	// same credentials (a passivated family), so generations never repeat. 0 for a new one.
	FirstGen uint64
}

// tokenActor is the only writer of credentials. Its behaviour is one of four states, switched with
// protoactor's Become: valid, refreshing, expired and closed.
//
// Supervision: a panic in a handler is recovered by the actor itself (recoverPanic), which answers
// the message's requester. One that escapes (none should) reaches protoactor's root strategy, which
// restarts the actor (at most ten times in ten seconds, then stops it). Both are safe: what must
// outlive an incarnation (the generation, the running refresh and its parked requesters, the end of
// the session, the timer) is kept in the TokenHandle, and the credentials are loaded from the store
// on every start, never taken from the options of New. A stopped actor fails every waiter with
// ErrClosed.
type tokenActor struct {
	cfg      TokenConfig
	h        *TokenHandle
	k        *kept
	behavior actor.Behavior

	creds    messages.Tokens
	expiry   time.Time // creds.Expiry, raised to the lifetime floor for a refreshed token
	rejected bool      // the API answered 401 to creds.Access
	auth     []string  // {creds.Scheme() + " " + creds.Access}, shared by every reply of this generation

	trigger *trace.SpanContext // the span of the requester whose message is being handled, if traced
}

// kept is the token actor's state that survives a restart of the actor. Only the actor's goroutine
// touches it.
type kept struct {
	gen       uint64             // generation of the credentials in force; grows by one per installed pair
	seq       uint64             // numbers refreshes; a RefreshDone/Failed for another seq is stale
	run       *refreshRun        // the refresh in progress; nil when none
	lastStart time.Time          // when the last refresh started: the minimum interval counts from it
	ended     error              // why the session expired (wraps ErrSessionExpired); nil while it lives
	endedBy   *trace.SpanContext // the span of the refresh that ended it, for its failures to link to
	closed    bool               // Shutdown was handled
	timer     *time.Timer        // the proactive refresh of the current generation
	idle      *time.Timer        // the next IdleCheck (see TokenConfig.Idle)
	reloading bool               // a Reload runs
	reloaded  time.Time          // when the last Reload started
}

func (k *kept) stopTimer() {
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
}

func newTokenActor(cfg TokenConfig, h *TokenHandle) *tokenActor {
	a := &tokenActor{cfg: cfg, h: h, k: &h.kept, behavior: actor.NewBehavior()}
	a.behavior.Become(a.valid)
	return a
}

// Receive handles what every state handles alike, then hands the message to the current state.
func (a *tokenActor) Receive(c actor.Context) {
	defer a.recoverPanic(c)
	a.trigger = nil
	switch m := c.Message().(type) {
	case messages.NeedToken:
		a.trigger = m.Trace
	case messages.TokenRejected:
		a.trigger = m.Trace
	case *actor.Started:
		a.start(c)
		return
	case *actor.Restarting:
		a.k.stopTimer() // the next incarnation arms its own
		return
	case messages.Shutdown:
		a.shutdown()
		close(m.Done)
		return
	case messages.IdleCheck:
		a.idleCheck(c)
		return
	case messages.Passivate:
		m.Reply <- a.passivate()
		return
	case messages.Reloaded:
		a.reloadedPair(c, m)
		return
	case *actor.Stopping:
		a.shutdown()
		return
	case *actor.Stopped:
		a.h.closeGone() // a stopped actor answers nothing: waiters must not wait for it
		return
	}
	a.behavior.Receive(c)
}

// start (re)builds the actor's state: the credentials from the store, the rest from what survived.
func (a *tokenActor) start(c actor.Context) {
	a.k.stopTimer()
	a.armIdle(c)
	t, err := a.h.store.load()
	if err != nil {
		a.log(slog.LevelWarn, "token store: loading the credentials failed", "error", err)
	}
	switch {
	case a.k.closed:
		a.behavior.Become(a.closed)
	case a.k.ended != nil:
		a.behavior.Become(a.expired)
	case a.k.run != nil:
		// A refresh ran when the actor restarted: adopt it. Its outcome comes back with its seq.
		a.install(c, t, t.Expiry)
		if !a.k.run.proactive {
			a.reject() // it was refused or expired: requests park behind the refresh, as before
			a.k.stopTimer()
		}
		a.behavior.Become(a.refreshing)
	default:
		a.install(c, t, t.Expiry)
		a.behavior.Become(a.valid)
	}
}

// valid: a token is held (it may still turn out rejected or past its expiry, which starts a refresh).
func (a *tokenActor) valid(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		a.serve(c, m.Reply, m.Ask, m.Deadline)
	case messages.TokenRejected:
		if m.Gen == a.k.gen {
			a.reject()
		}
		a.serve(c, m.Reply, m.Ask, m.Deadline)
	case messages.RefreshDue:
		if m.Gen == a.k.gen && a.canRefresh() {
			if s := a.h.snap.Load(); s != nil && s.used.Load() {
				a.startRefresh(c, true, nil, time.Time{})
			} // else nobody used this token: let it lapse; the next request refreshes
		}
	case messages.SetTokens:
		a.replace(c, m, nil)
	}
}

// refreshing: one refresh runs outside the mailbox; requesters park until it reports back. During a
// proactive refresh the old token has not expired, so it is still handed out.
func (a *tokenActor) refreshing(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		if a.k.run.proactive && a.usable() {
			a.grant(m.Reply)
			return
		}
		a.park(m.Reply, m.Ask, m.Deadline)
	case messages.TokenRejected:
		if m.Gen == a.k.gen {
			a.reject()
		}
		if m.Gen < a.k.gen && a.usable() { // a 401 for a token already replaced: answer with the new one
			a.grant(m.Reply)
			return
		}
		a.park(m.Reply, m.Ask, m.Deadline)
	case messages.RefreshDone:
		if m.Seq == a.k.seq {
			a.refreshed(c, m)
		}
	case messages.RefreshFailed:
		if m.Seq == a.k.seq {
			a.refreshFailed(c, m)
		}
	case messages.SetTokens:
		a.replace(c, m, a.abandonRefresh())
	}
}

// expired: the session is over; everything fails fast until the application sets new tokens (here,
// or, with Reload, in the store another engine shares).
func (a *tokenActor) expired(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		reply(m.Reply, messages.TokenReply{Err: a.k.ended, Refresh: a.k.endedBy})
		a.reload(c)
	case messages.TokenRejected:
		reply(m.Reply, messages.TokenReply{Err: a.k.ended, Refresh: a.k.endedBy})
		a.reload(c)
	case messages.SetTokens:
		a.replace(c, m, nil)
	}
}

// reload starts a Reload, unless one runs or the last began less than the minimum interval ago.
func (a *tokenActor) reload(c actor.Context) {
	if a.cfg.Reload == nil || a.k.reloading || time.Since(a.k.reloaded) < a.minInterval() {
		return
	}
	a.k.reloading, a.k.reloaded = true, time.Now()
	f, timeout, self, h := a.cfg.Reload, a.cfg.RefreshTimeout, c.Self(), a.h
	h.background.Add(1)
	go func() {
		defer h.background.Done()
		ctx, cancel := context.WithTimeout(h.life, timeout)
		defer cancel()
		var m messages.Reloaded
		func() {
			defer func() { _ = recover() }() // a panicking Reload is a failed one
			t, ok, err := f(ctx)
			m = messages.Reloaded{Tokens: t, OK: ok && err == nil && CheckTokens(t) == nil}
		}()
		if !h.isGone() {
			h.root.Send(self, m)
		}
	}()
}

// reloadedPair ends the expired state with the pair a Reload found, if it found one and the session
// is still ended.
func (a *tokenActor) reloadedPair(c actor.Context, m messages.Reloaded) {
	a.k.reloading = false
	if !m.OK || a.k.ended == nil || a.k.closed {
		return
	}
	a.k.ended, a.k.endedBy = nil, nil
	a.install(c, m.Tokens, m.Tokens.Expiry)
	a.behavior.Become(a.valid)
	gen := a.k.gen
	a.event(func(e TokenEvents) { e.TokensReplaced(gen) })
}

// closed: after Shutdown nothing is granted any more.
func (a *tokenActor) closed(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		reply(m.Reply, messages.TokenReply{Err: messages.ErrClosed})
	case messages.TokenRejected:
		reply(m.Reply, messages.TokenReply{Err: messages.ErrClosed})
	case messages.SetTokens:
		if m.Done != nil {
			m.Done <- messages.ErrClosed
		}
	}
}

// serve answers a requester in the valid state: now if the token is usable, else after a refresh.
func (a *tokenActor) serve(c actor.Context, r chan<- messages.TokenReply, ask *messages.Ask, deadline time.Time) {
	switch {
	case a.usable():
		a.grant(r)
	case a.canRefresh():
		a.startRefresh(c, false, nil, deadline)
		a.park(r, ask, deadline)
	default:
		failed := 0
		if r != nil && ask.Park() {
			failed = 1 // counted among the requests the session's end failed
		}
		a.expire(errors.New("no refresh token"), failed)
		reply(r, messages.TokenReply{Err: a.k.ended})
	}
}

func (a *tokenActor) usable() bool {
	return a.creds.Access != "" && !a.rejected && (a.expiry.IsZero() || time.Now().Before(a.expiry))
}

func (a *tokenActor) canRefresh() bool {
	return a.cfg.Refresh != nil && (!a.cfg.RequiresRefreshToken || a.creds.Refresh != "")
}

func (a *tokenActor) grant(r chan<- messages.TokenReply) {
	if s := a.h.snap.Load(); s != nil {
		s.markUsed()
	}
	reply(r, messages.TokenReply{Token: a.creds.Access, Auth: a.auth, Gen: a.k.gen})
}

// reject marks the current token as refused by the API: nobody is handed it again.
func (a *tokenActor) reject() {
	a.rejected = true
	a.h.snap.Store(nil)
}

// park answers a requester with the Pending of the running refresh, unless the requester gave up
// before this message was read (then it is neither answered nor counted).
func (a *tokenActor) park(r chan<- messages.TokenReply, ask *messages.Ask, deadline time.Time) {
	run := a.k.run
	if r == nil || !ask.Park() {
		return
	}
	run.pending.Join()
	run.noteDeadline(deadline)
	reply(r, messages.TokenReply{Wait: run.pending})
}

// install makes t the current credentials under a new generation, publishes the snapshot that
// requests read without a message, and schedules the proactive refresh. expiry is when the actor
// takes t to expire (t.Expiry, or later for a refreshed token below the lifetime floor).
func (a *tokenActor) install(c actor.Context, t messages.Tokens, expiry time.Time) {
	a.k.stopTimer()
	a.creds, a.expiry = t, expiry
	a.k.gen++
	a.h.gen.Store(a.k.gen)
	a.rejected = false
	a.auth = nil
	if t.Access == "" {
		a.h.snap.Store(nil)
		return
	}
	a.auth = []string{t.Scheme() + " " + t.Access}
	a.h.snap.Store(&Snapshot{Header: a.auth[0], Gen: a.k.gen, Expiry: expiry, values: a.auth})
	a.schedule(c)
}

func (a *tokenActor) shutdown() {
	a.k.closed = true
	a.k.stopTimer()
	if a.k.idle != nil {
		a.k.idle.Stop()
		a.k.idle = nil
	}
	a.h.snap.Store(nil)
	a.behavior.Become(a.closed)
	run := a.k.run
	if run == nil {
		return
	}
	// The refresh makes no further call, but the one in progress may finish and be saved (Stop
	// waits for it, bounded by Close's context).
	run.stopRetrying()
	n := run.pending.Resolve(messages.TokenReply{Err: messages.ErrClosed})
	endSpan(run, telemetry.RefreshAbandoned, 0, n, messages.ErrClosed, time.Now())
	a.k.run = nil
}

// log writes a record through the user's logger, which must not be able to break the actor.
func (a *tokenActor) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if run := a.k.run; run != nil && run.sc != nil {
		ctx = trace.ContextWithSpanContext(ctx, *run.sc)
	}
	safely(func() { a.cfg.Logger.Log(ctx, level, msg, args...) })
}

// event calls the event sink, which must not be able to break the actor either.
func (a *tokenActor) event(f func(TokenEvents)) {
	if a.cfg.Events != nil {
		safely(func() { f(a.cfg.Events) })
	}
}

// recoverPanic keeps a bug in a handler (or in a span processor it calls) from reaching
// protoactor's supervisor, and answers the requester of the failed message instead of leaving it
// waiting. Handlers change state only after the calls that may panic, so what is kept stays whole.
func (a *tokenActor) recoverPanic(c actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	ctx := context.Background()
	if a.trigger != nil {
		ctx = trace.ContextWithSpanContext(ctx, *a.trigger)
	}
	err := recovered(a.cfg.Logger, ctx, "token actor", r)
	switch m := c.Message().(type) {
	case messages.NeedToken:
		reply(m.Reply, messages.TokenReply{Err: err})
	case messages.TokenRejected:
		reply(m.Reply, messages.TokenReply{Err: err})
	case messages.SetTokens:
		if m.Done != nil {
			m.Done <- err
		}
	}
}

// reply sends without blocking: reply channels are buffered and answered at most once.
func reply(r chan<- messages.TokenReply, rep messages.TokenReply) {
	if r == nil {
		return
	}
	select {
	case r <- rep:
	default:
	}
}
