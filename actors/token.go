package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// RefreshFunc trades the current credentials for new ones. ctx carries the refresh timeout and ends
// when the engine closes, never because the request that triggered the refresh went away.
//
// An error ends the session (every waiting request gets ErrSessionExpired) when it wraps
// messages.ErrSessionExpired, is a *tokenwire.EndpointError for a definitive 4xx, or wraps
// tokenwire.ErrMalformed. Any other error is taken as passing: the waiting requests get
// ErrRefreshFailed, the credentials are kept, and the next request tries again.
type RefreshFunc func(ctx context.Context, current messages.Tokens) (messages.Tokens, error)

// TokenConfig configures the token actor.
type TokenConfig struct {
	Tokens  messages.Tokens // the credentials to start with
	Refresh RefreshFunc     // nil: no refresh; a rejected or expired token ends the session
	// RequiresRefreshToken: Refresh cannot work without Tokens.Refresh (true for the built-in
	// formats), so a session without one expires instead of calling it.
	RequiresRefreshToken bool
	RefreshTimeout       time.Duration                                      // bounds one refresh call; must be > 0
	Supervisor           *Supervisor                                        // retries refresh calls that fail transiently; nil: one call
	RefreshHost          string                                             // the token endpoint's host[:port], for the retry budget, events and telemetry; "" when unknown
	Skew                 time.Duration                                      // refresh this long before expiry (at most half the token's lifetime); ≤ 0: never proactively
	Save                 func(ctx context.Context, t messages.Tokens) error // optional; persists a refreshed pair before anyone is released
	Publish              func(event any)                                    // receives events; must not block
	Logger               *slog.Logger
	Telemetry            *telemetry.T // spans and metrics of refreshes and parked requests; nil: none
}

// tokenActor is the only writer of credentials. Its behaviour is one of three states, switched with
// protoactor's Become: valid, refreshing and expired (plus closed after Shutdown).
type tokenActor struct {
	cfg      TokenConfig
	h        *TokenHandle
	behavior actor.Behavior

	creds    messages.Tokens
	gen      uint64 // generation of creds.Access; grows by one per installed token
	rejected bool   // the API answered 401 to creds.Access
	ended    error  // why the session expired (wraps ErrSessionExpired), in the expired state

	pending *messages.Pending // what requesters wait for while a refresh runs; nil when none waits
	auth    []string          // {"Bearer " + creds.Access}, shared by every reply of this generation

	seq       uint64 // numbers refreshes; a RefreshDone/Failed for another seq is stale
	proactive bool
	started   time.Time
	cancel    context.CancelFunc // ends the running refresh

	trigger   *trace.SpanContext // the span of the requester whose message is being handled, if traced
	refresh   telemetry.Refresh  // the running refresh's span (ended when it reports back)
	refreshSC *trace.SpanContext // the last refresh's span, named in the replies it releases; nil if none

	timer *time.Timer // the proactive refresh of the current generation

	life context.Context // ends on Shutdown; parent of every refresh
	stop context.CancelFunc
}

func newTokenActor(cfg TokenConfig, h *TokenHandle) *tokenActor {
	a := &tokenActor{cfg: cfg, h: h, behavior: actor.NewBehavior()}
	a.life, a.stop = context.WithCancel(context.Background())
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
	}
	switch m := c.Message().(type) {
	case *actor.Started:
		a.install(c, a.cfg.Tokens)
		return
	case messages.Shutdown:
		a.shutdown()
		close(m.Done)
		return
	case *actor.Stopping:
		a.shutdown()
		return
	}
	a.behavior.Receive(c)
}

// valid: a token is held (it may still turn out rejected or past its expiry, which starts a refresh).
func (a *tokenActor) valid(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		a.serve(c, m.Reply)
	case messages.TokenRejected:
		if m.Gen == a.gen {
			a.reject()
		}
		a.serve(c, m.Reply)
	case messages.RefreshDue:
		if m.Gen == a.gen && a.canRefresh() {
			a.startRefresh(c, true)
		}
	case messages.SetTokens:
		a.replace(c, m)
	}
}

// refreshing: one refresh runs outside the mailbox; requesters park until it reports back. During a
// proactive refresh the old token has not expired, so it is still handed out.
func (a *tokenActor) refreshing(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		if a.proactive && a.usable() {
			a.grant(m.Reply)
			return
		}
		a.park(m.Reply)
	case messages.TokenRejected:
		if m.Gen == a.gen {
			a.reject()
		}
		if m.Gen < a.gen && a.usable() { // a 401 for a token already replaced: answer with the new one
			a.grant(m.Reply)
			return
		}
		a.park(m.Reply)
	case messages.RefreshDone:
		if m.Seq == a.seq {
			a.refreshed(c, m.Tokens)
		}
	case messages.RefreshFailed:
		if m.Seq == a.seq {
			a.refreshFailed(c, m)
		}
	case messages.SetTokens:
		a.abandonRefresh()
		a.replace(c, m)
	}
}

// expired: the session is over; everything fails fast until the application sets new tokens.
func (a *tokenActor) expired(c actor.Context) {
	switch m := c.Message().(type) {
	case messages.NeedToken:
		reply(m.Reply, messages.TokenReply{Err: a.ended})
	case messages.TokenRejected:
		reply(m.Reply, messages.TokenReply{Err: a.ended})
	case messages.SetTokens:
		a.replace(c, m)
	}
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
func (a *tokenActor) serve(c actor.Context, r chan<- messages.TokenReply) {
	switch {
	case a.usable():
		a.grant(r)
	case a.canRefresh():
		a.park(r)
		a.startRefresh(c, false)
	default:
		a.park(r) // counted among the requests the session's end failed
		a.expire(errors.New("no refresh token"))
	}
}

func (a *tokenActor) usable() bool {
	return a.creds.Access != "" && !a.rejected && (a.creds.Expiry.IsZero() || time.Now().Before(a.creds.Expiry))
}

func (a *tokenActor) canRefresh() bool {
	return a.cfg.Refresh != nil && (!a.cfg.RequiresRefreshToken || a.creds.Refresh != "")
}

func (a *tokenActor) grant(r chan<- messages.TokenReply) {
	reply(r, messages.TokenReply{Token: a.creds.Access, Auth: a.auth, Gen: a.gen})
}

// reject marks the current token as refused by the API: nobody is handed it again.
func (a *tokenActor) reject() {
	a.rejected = true
	a.h.snap.Store(nil)
}

// park answers a requester with the Pending it waits on until the refresh ends (made now if nobody
// waits yet).
func (a *tokenActor) park(r chan<- messages.TokenReply) {
	if r == nil {
		return // a report without a reply channel: nobody waits
	}
	if a.pending == nil {
		a.pending = messages.NewPending()
	}
	a.pending.Join() // counted here; a requester that gives up leaves
	reply(r, messages.TokenReply{Wait: a.pending})
}

// waiting is how many requesters wait for the Pending now.
func (a *tokenActor) waiting() int {
	if a.pending == nil {
		return 0
	}
	return a.pending.Waiting()
}

// releaseAll resolves the Pending with rep, releasing every requester parked on it at once (one
// channel close), and returns how many there were. The reply names the span of the refresh that
// ended the wait, if one ran.
func (a *tokenActor) releaseAll(rep messages.TokenReply) int {
	p := a.pending
	if p == nil {
		return 0
	}
	a.pending = nil
	rep.Refresh = a.refreshSC
	n := p.Waiting()
	p.Resolve(rep)
	return n
}

// install makes t the current credentials under a new generation, publishes the snapshot that
// requests read without a message, and schedules the proactive refresh.
func (a *tokenActor) install(c actor.Context, t messages.Tokens) {
	a.stopTimer()
	a.creds = t
	a.gen++
	a.rejected = false
	a.auth = nil
	if t.Access == "" {
		a.h.snap.Store(nil)
		return
	}
	a.auth = []string{"Bearer " + t.Access}
	a.h.snap.Store(&Snapshot{Header: a.auth[0], Gen: a.gen, Expiry: t.Expiry, values: a.auth})
	a.schedule(c, 0)
}

// schedule arms the proactive refresh: Skew before expiry, but never earlier than half-way through
// the token's remaining life, so short-lived tokens are not refreshed in a loop.
// A wait shorter than minWait is not armed (a failed proactive refresh retries only while there is
// time; once the token expires, the next request refreshes reactively).
func (a *tokenActor) schedule(c actor.Context, minWait time.Duration) {
	if a.creds.Expiry.IsZero() || a.cfg.Refresh == nil || a.cfg.Skew <= 0 {
		return
	}
	life := time.Until(a.creds.Expiry)
	if life <= 0 {
		return
	}
	lead := min(a.cfg.Skew, life/2)
	if life-lead < minWait {
		return
	}
	gen, self, root := a.gen, c.Self(), c.ActorSystem().Root
	a.h.background.Add(1)
	a.timer = time.AfterFunc(life-lead, func() {
		defer a.h.background.Done()
		root.Send(self, messages.RefreshDue{Gen: gen})
	})
}

func (a *tokenActor) stopTimer() {
	if a.timer != nil && a.timer.Stop() {
		a.h.background.Done() // the callback will never run
	}
	a.timer = nil
}

// startRefresh runs one refresh outside the mailbox and switches to refreshing. The refresh is bound
// to the actor's life and the refresh timeout, not to any requester's context.
func (a *tokenActor) startRefresh(c actor.Context, proactive bool) {
	a.seq++
	a.proactive, a.started = proactive, time.Now()
	if !proactive {
		a.h.snap.Store(nil)
	}
	ctx, cancel := context.WithCancel(a.life)
	a.behavior.Become(a.refreshing)
	var trigger trace.SpanContext
	if a.trigger != nil && !proactive {
		trigger = *a.trigger
	}
	ctx, a.refresh = a.cfg.Telemetry.StartRefresh(ctx, a.cfg.RefreshHost, proactive, trigger)
	a.cancel = cancel // from here on, the refresh resolves what requesters wait for
	a.refreshSC = nil
	if sc := a.refresh.SpanContext(); sc.IsValid() {
		a.refreshSC = &sc // one per refresh, shared by every reply it releases
	}

	seq, current, self, root := a.seq, a.creds, c.Self(), c.ActorSystem().Root
	refresh, save, timeout := a.cfg.Refresh, a.cfg.Save, a.cfg.RefreshTimeout
	sup, host, tel := a.cfg.Supervisor, a.cfg.RefreshHost, a.cfg.Telemetry
	a.h.background.Add(1)
	go func() {
		defer a.h.background.Done()
		defer cancel()
		t, err := refreshRetrying(ctx, refresh, current, timeout, sup, host, tel)
		if a.life.Err() != nil {
			return // the actor is shutting down: nobody is left to tell (and no dead letter)
		}
		if err != nil {
			root.Send(self, messages.RefreshFailed{Seq: seq, Err: err, Permanent: permanent(err)})
			return
		}
		if save != nil && ctx.Err() == nil {
			// Persist the rotated pair before anyone is released: the old refresh token is spent.
			sctx, scancel := context.WithTimeout(a.life, timeout)
			if serr := save(sctx, t); serr != nil {
				a.cfg.Logger.WarnContext(ctx, "token store: saving the refreshed tokens failed", "error", serr)
			}
			scancel()
		}
		root.Send(self, messages.RefreshDone{Seq: seq, Tokens: t})
	}()
}

// refreshRetrying calls the refresh function, each call bounded by timeout. A failure that may pass
// (the endpoint answered 408, 429 or 5xx, could not be reached, or timed out) is retried under the
// supervisor's policy, honouring the endpoint's Retry-After, while the requests stay parked; the
// error of the last call is returned when retrying stops. Without a supervisor it calls once.
func refreshRetrying(ctx context.Context, f RefreshFunc, current messages.Tokens, timeout time.Duration, s *Supervisor, endpoint string, tel *telemetry.T) (messages.Tokens, error) {
	start := time.Now()
	host := endpoint // the supervisor keys budgets and cool-downs by it
	if host == "" {
		host = "refresh"
	}
	for calls := 1; ; calls++ {
		if s != nil {
			// An endpoint that asked for a pause (Retry-After) is not called before it ends.
			if _, err := s.waitCoolDown(ctx, host); err != nil {
				return messages.Tokens{}, err
			}
		}
		actx, cancel := context.WithTimeout(telemetry.WithResend(ctx, calls-1), timeout)
		t, err := callRefresh(actx, f, current)
		cancel()
		if err == nil || s == nil || ctx.Err() != nil {
			return t, err
		}
		reason, serverWait, ok := refreshRetryable(err)
		if !ok || calls > s.policy.MaxRetries {
			return t, err
		}
		now := time.Now()
		if serverWait > 0 {
			var ee *tokenwire.EndpointError
			status := 0
			if errors.As(err, &ee) {
				status = ee.Status
			}
			s.serverPause(ctx, host, serverWait, status, now) // the next refresh waits it out too
		}
		wait, ok := s.policy.nextWait(calls, serverWait, serverWait > 0, start, now)
		if !ok {
			return t, err
		}
		ask := messages.RetryAsk{Host: host, Method: http.MethodPost, Attempt: calls + 1, Reason: reason, Delay: wait}
		if s.askRetry(ctx, ask) != nil {
			return t, err
		}
		tel.RefreshRetry(ctx, endpoint, reason, wait, serverWait > 0, calls)
		if sleep(ctx, wait) != nil {
			return t, err
		}
	}
}

// refreshRetryable says whether a failed refresh call may succeed if made again, why, and the wait
// the endpoint asked for (0 if none). Repeating a refresh is safe: if the endpoint did rotate the
// refresh token before the answer was lost, the next request's refresh would replay it just the same.
func refreshRetryable(err error) (reason string, wait time.Duration, ok bool) {
	var ee *tokenwire.EndpointError
	switch {
	case errors.Is(err, messages.ErrSessionExpired), errors.Is(err, tokenwire.ErrMalformed):
		return "", 0, false
	case errors.As(err, &ee):
		if ee.Status == http.StatusRequestTimeout {
			return retry.ReasonTimeout, ee.RetryAfter, true
		}
		if reason := retry.StatusReason(ee.Status); reason != "" {
			return reason, ee.RetryAfter, true
		}
		return "", 0, false
	case errors.Is(err, context.DeadlineExceeded): // this call's timeout (ctx itself is still alive)
		return retry.ReasonTimeout, 0, true
	}
	if reason, _, ok := retry.NetworkReason(err); ok {
		return reason, 0, true
	}
	return "", 0, false
}

// callRefresh runs the refresh function, turning a panic into an error.
func callRefresh(ctx context.Context, f RefreshFunc, current messages.Tokens) (t messages.Tokens, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("refresh function panicked: %v", r)
		}
	}()
	return f(ctx, current)
}

// permanent reports whether a refresh error ends the session rather than passing.
func permanent(err error) bool {
	var ee *tokenwire.EndpointError
	switch {
	case errors.Is(err, messages.ErrSessionExpired), errors.Is(err, tokenwire.ErrMalformed):
		return true
	case errors.As(err, &ee):
		return ee.Permanent()
	default:
		return false
	}
}

func (a *tokenActor) abandonRefresh() {
	a.seq++ // whatever it reports is now stale
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
	}
	a.refresh.End(context.Background(), telemetry.RefreshAbandoned, 0, 0, nil, time.Now())
	a.refreshSC = nil // what is released from now on was not released by that refresh
}

// logCtx carries the last refresh's span, so log records about it name its trace.
func (a *tokenActor) logCtx() context.Context {
	if a.refreshSC == nil {
		return context.Background()
	}
	return trace.ContextWithSpanContext(context.Background(), *a.refreshSC)
}

func (a *tokenActor) refreshed(c actor.Context, t messages.Tokens) {
	a.cancel = nil
	proactive, took := a.proactive, time.Since(a.started)
	a.install(c, t)
	a.behavior.Become(a.valid)
	// Release first, end the span after (at the release's time): span processors run on this
	// goroutine, and a slow exporter must not hold the parked requests.
	at := time.Now()
	n := a.releaseAll(messages.TokenReply{Token: t.Access, Auth: a.auth, Gen: a.gen})
	a.refresh.End(context.Background(), telemetry.RefreshSuccess, a.gen, n, nil, at)
	a.refreshSC = nil
	a.publish(messages.TokenRefreshed{Gen: a.gen, Expiry: t.Expiry, Proactive: proactive, Released: n, Duration: took})
}

func (a *tokenActor) refreshFailed(c actor.Context, m messages.RefreshFailed) {
	a.cancel = nil
	at := time.Now()
	if m.Permanent {
		n := a.expire(m.Err)
		a.refresh.End(context.Background(), telemetry.RefreshExpired, 0, n, a.ended, at)
		a.refreshSC = nil
		return
	}
	a.cfg.Logger.WarnContext(a.logCtx(), "token refresh failed; credentials kept", "error", m.Err)
	a.behavior.Become(a.valid)
	err := fmt.Errorf("%w: %w", messages.ErrRefreshFailed, m.Err)
	n := a.releaseAll(messages.TokenReply{Err: err})
	a.refresh.End(context.Background(), telemetry.RefreshFailed, 0, n, err, at)
	a.refreshSC = nil
	if a.proactive && a.usable() {
		// The old token still works; try again half-way to its expiry rather than waiting for it.
		a.schedule(c, time.Second)
	}
}

// expire ends the session: credentials cleared, every parked requester failed, one event. It
// returns how many parked requesters it failed.
func (a *tokenActor) expire(cause error) int {
	a.stopTimer()
	a.creds = messages.Tokens{}
	a.h.snap.Store(nil)
	a.ended = fmt.Errorf("%w: %w", messages.ErrSessionExpired, cause)
	a.behavior.Become(a.expired)
	n := a.releaseAll(messages.TokenReply{Err: a.ended})
	a.cfg.Logger.WarnContext(a.logCtx(), "session expired", "error", a.ended, "failed_requests", n)
	a.publish(messages.SessionExpired{Err: a.ended, Failed: n})
	return n
}

// replace installs credentials given by the application and answers everyone parked with them.
func (a *tokenActor) replace(c actor.Context, m messages.SetTokens) {
	a.ended = nil
	a.install(c, m.Tokens)
	a.behavior.Become(a.valid)
	if a.usable() {
		a.releaseAll(messages.TokenReply{Token: a.creds.Access, Auth: a.auth, Gen: a.gen})
	} else if a.pending != nil {
		a.serve(c, nil) // starts the refresh the parked requesters are waiting for
	}
	a.publish(messages.TokensReplaced{Gen: a.gen})
	if m.Done != nil {
		m.Done <- nil
	}
}

func (a *tokenActor) shutdown() {
	a.stop()
	a.stopTimer()
	a.h.snap.Store(nil)
	at := time.Now()
	n := a.releaseAll(messages.TokenReply{Err: messages.ErrClosed})
	a.behavior.Become(a.closed)
	a.refresh.End(context.Background(), telemetry.RefreshAbandoned, 0, n, messages.ErrClosed, at)
}

func (a *tokenActor) publish(ev any) {
	if a.cfg.Publish != nil {
		a.cfg.Publish(ev)
	}
}

// recoverPanic keeps a bug in a handler from losing the actor's state (protoactor would restart it
// empty) and answers the requester of the failed message instead of leaving it waiting.
func (a *tokenActor) recoverPanic(c actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	err := fmt.Errorf("engine: internal error in the token actor: %v", r)
	ctx := context.Background()
	if a.trigger != nil {
		ctx = trace.ContextWithSpanContext(ctx, *a.trigger)
	}
	a.cfg.Logger.ErrorContext(ctx, "token actor panicked", "error", err)
	if a.pending != nil && a.cancel == nil {
		// Requesters wait, and no refresh runs to answer them: the panic came between parking them
		// and starting it (a span processor, say). Fail them now rather than leave them waiting; the
		// next request starts a refresh again.
		a.releaseAll(messages.TokenReply{Err: err})
		a.behavior.Become(a.valid)
	}
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
