package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// The refresh runner: one refresh at a time runs on a goroutine of its own, outside the mailbox, and
// reports back with RefreshDone or RefreshFailed. Its order is: call the endpoint (retrying passing
// failures while requests wait) → save the new pair → report → the actor installs it, releases the
// waiters, and publishes TokenRefreshed.

// refreshRun is one refresh in progress. It is kept in the TokenHandle, so a restarted actor adopts
// it with its parked requesters.
type refreshRun struct {
	seq       uint64
	proactive bool
	started   time.Time
	pending   *messages.Pending // what its requesters wait on
	until     atomic.Int64      // the latest deadline among them (unix ns); noDeadline when one has none
	save      uint64            // the sequence number of its save
	rotated   string            // a refresh token a refused answer carried; only the refresh goroutine writes it
	span      telemetry.Refresh
	sc        *trace.SpanContext // span context of span, named in the replies it releases; nil if not traced

	stopRetrying context.CancelFunc // no further call (Close, SetTokens); the one in progress goes on
	abort        context.CancelFunc // ends the call in progress too (SetTokens)
}

const noDeadline = math.MaxInt64

// noteDeadline takes the deadline of a requester parked on the run into account.
func (r *refreshRun) noteDeadline(d time.Time) {
	v := int64(noDeadline)
	if !d.IsZero() {
		v = d.UnixNano()
	}
	for {
		cur := r.until.Load()
		if v <= cur || r.until.CompareAndSwap(cur, v) {
			return
		}
	}
}

// worthRetrying says whether the refresh, after calls failed calls, is tried again after wait: while
// requests wait for it, within its window; with nobody waiting (a proactive refresh), as far as the
// policy lets a request retry.
func (r *refreshRun) worthRetrying(calls int, wait time.Duration, now time.Time, p *RetryPolicy, timeout time.Duration) bool {
	if wait > p.MaxRetryAfter {
		return false
	}
	at := now.Add(wait)
	if r.pending.Waiting() == 0 {
		return calls <= p.MaxRetries && at.Sub(r.started) <= p.MaxElapsed
	}
	return at.Before(r.window(timeout))
}

// window is when retrying the refresh stops being useful to its requesters: the latest of their
// deadlines (none: unbounded), but never later than the refresh timeout after it started. A
// requester without a deadline does not shorten the others' window.
func (r *refreshRun) window(timeout time.Duration) time.Time {
	end := r.started.Add(timeout)
	if u := r.until.Load(); u != 0 && u != noDeadline && u < end.UnixNano() {
		return time.Unix(0, u)
	}
	return end
}

// startRefresh starts one refresh and switches to refreshing. carry, if not nil, holds requesters
// already parked (on a refresh SetTokens abandoned) who now wait for this one.
func (a *tokenActor) startRefresh(c actor.Context, proactive bool, carry *messages.Pending, first time.Time) {
	var trigger trace.SpanContext
	if a.trigger != nil && !proactive {
		trigger = *a.trigger
	}
	// The span starts first: a span processor is user code and may panic, and nothing has changed yet.
	ctx, span := a.h.life, telemetry.Refresh{}
	safely(func() { ctx, span = a.cfg.Telemetry.StartRefresh(a.h.life, a.cfg.RefreshHost, proactive, trigger) })
	now := time.Now()
	a.k.seq++
	run := &refreshRun{seq: a.k.seq, proactive: proactive, started: now, pending: messages.NewPending(), save: a.h.store.reserve(), span: span}
	if carry != nil {
		run.pending = carry
		run.until.Store(noDeadline) // their deadlines are not known any more
	} else if !proactive {
		run.noteDeadline(first) // before the goroutine reads it (the requester parks just after)
	}
	var sc trace.SpanContext
	safely(func() { sc = span.SpanContext() })
	if sc.IsValid() {
		run.sc = &sc // one per refresh, shared by every reply it releases
	}
	retryCtx, stopRetrying := context.WithCancel(ctx)
	callCtx, abort := context.WithCancel(ctx)
	run.stopRetrying, run.abort = stopRetrying, abort
	a.k.run, a.k.lastStart = run, now
	if !proactive {
		a.h.snap.Store(nil)
	}
	a.behavior.Become(a.refreshing)

	cfg, current, self, h := a.cfg, a.creds, c.Self(), a.h
	h.background.Add(1)
	go func() {
		defer h.background.Done()
		defer abort()
		// A pair whose refresh token the endpoint rotated in an answer it could not use is saved
		// under this refresh's sequence number: in order with SetTokens, and overwritten by the
		// refresh's own pair if it succeeds.
		keep := func(t messages.Tokens) { _ = h.store.save(run.save, t) }
		t, err := refreshRetrying(retryCtx, callCtx, run, &cfg, current, keep)
		var saveErr error
		if err == nil {
			// Saved before anyone uses it: the old refresh token is spent. The save has a context of
			// its own, so neither Close nor a restart cuts it short.
			saveErr = h.store.save(run.save, t)
		}
		if h.isGone() {
			return // nobody is left to tell (and no dead letter)
		}
		if err != nil {
			h.root.Send(self, messages.RefreshFailed{Seq: run.seq, Err: err, Permanent: retry.Classify(err).Permanent, Rotated: run.rotated})
			return
		}
		h.root.Send(self, messages.RefreshDone{Seq: run.seq, Tokens: t, SaveErr: saveErr})
	}()
}

// refreshRetrying calls the refresh function, each call bounded by the refresh timeout and callCtx.
// A failure retry.Classify calls retryable is retried, honouring the endpoint's Retry-After and the
// host's retry budget, for as long as worthRetrying says and retryCtx lives; the error of the last
// call is returned when retrying stops. Without a supervisor it calls once.
//
// An error carrying a rotated refresh token (messages.RotatedRefresh) means the one sent is spent:
// the pair with the new one is handed to keep (saved) and remembered in run.rotated, and any later
// call sends it. A refused 2xx answer without one is not retried when a refresh token was sent: the
// server may have rotated, and replaying the spent token would trip its reuse detection.
func refreshRetrying(retryCtx, callCtx context.Context, run *refreshRun, cfg *TokenConfig, current messages.Tokens, keep func(messages.Tokens)) (messages.Tokens, error) {
	s, tel := cfg.Supervisor, cfg.Telemetry
	host := cfg.RefreshHost // the supervisor keys budgets and cool-downs by it
	if host == "" {
		host = "refresh"
	}
	for calls := 1; ; calls++ {
		if s != nil {
			// An endpoint that asked for a pause (Retry-After) is not called before it ends; a pause
			// that outlasts the requesters' window fails them at once with a RetryLaterError.
			wctx, cancel := context.WithDeadline(retryCtx, run.window(cfg.RefreshTimeout))
			_, err := s.waitCoolDown(wctx, host)
			cancel()
			if err != nil {
				return messages.Tokens{}, err
			}
		}
		release, err := enterGate(retryCtx, cfg.Gate, run.window(cfg.RefreshTimeout))
		if err != nil {
			return messages.Tokens{}, err
		}
		actx, cancel := context.WithTimeout(telemetry.WithResend(callCtx, calls-1), cfg.RefreshTimeout)
		began := time.Now()
		t, err := callRefresh(actx, cfg.Refresh, current)
		took := time.Since(began)
		cancel()
		release()
		if err == nil {
			err = checkAnswer(t) // a pair that cannot be sent would fail every request
		} else {
			// A user's refresh function (or token source) may quote the tokens in its error, which
			// then goes to requests, logs and spans.
			err = scrubbed(err, current.Access, current.Refresh, t.Access, t.Refresh)
		}
		if err == nil {
			return t, nil
		}
		rt := rotatedRefresh(err)
		if rt != "" && rt != current.Refresh {
			current.Refresh, run.rotated = rt, rt
			keep(current)
		}
		if s == nil || retryCtx.Err() != nil {
			return t, err
		}
		v := retry.Classify(err)
		if !v.Retry || rt == "" && current.Refresh != "" && errors.Is(err, retry.ErrMalformedAnswer) {
			return t, err
		}
		now := time.Now()
		wait := v.Wait
		if wait > 0 {
			s.serverPause(retryCtx, host, wait, v.Status, now) // the next refresh waits it out too
		} else {
			wait = retry.Backoff(calls, s.policy.BaseDelay, s.policy.MaxDelay, nil)
		}
		// A retry is worth it only if it can also end (about as long as this call took) before the
		// requesters' window does: then they get the refresh's own error, not a bare deadline.
		if !run.worthRetrying(calls, wait+took, now, &s.policy, cfg.RefreshTimeout) {
			return t, err
		}
		ask := messages.RetryAsk{Host: host, Method: http.MethodPost, Attempt: calls + 1, Reason: v.Reason, Delay: wait}
		if s.askRetry(retryCtx, ask) != nil {
			return t, err
		}
		safely(func() { tel.RefreshRetry(retryCtx, cfg.RefreshHost, v.Reason, wait, v.Wait > 0, calls) })
		if sleep(retryCtx, wait) != nil {
			return t, err
		}
	}
}

// endSpan ends a refresh's span. Span processors and meters are user code: a panic in one must
// neither break the actor nor skip what follows (waiters are always resolved before this runs).
func endSpan(run *refreshRun, outcome string, gen uint64, n int, err error, at time.Time) {
	safely(func() { run.span.End(context.Background(), outcome, gen, n, err, at) })
}

// rotatedRefresh is the sendable refresh token err carries (see messages.RotatedRefresh), or "".
func rotatedRefresh(err error) string {
	var r messages.RotatedRefresh
	if !errors.As(err, &r) {
		return ""
	}
	rt := r.RotatedRefreshToken()
	if tokenwire.CheckRefreshToken(rt) != nil {
		return ""
	}
	return rt
}

// enterGate takes a slot of gate (nil: no bound) for one refresh call, waiting for it until ctx ends
// or until the requesters' window closes; release gives it back. The wait does not eat into the
// call's own timeout, and the slot is not held through the backoff between calls.
func enterGate(ctx context.Context, gate chan struct{}, window time.Time) (release func(), err error) {
	if gate == nil {
		return func() {}, nil
	}
	select {
	case gate <- struct{}{}: // a free slot: no timer needed
		return func() { <-gate }, nil
	default:
	}
	wctx, cancel := context.WithDeadline(ctx, window)
	defer cancel()
	select {
	case gate <- struct{}{}:
		return func() { <-gate }, nil
	case <-wctx.Done():
		return nil, fmt.Errorf("waiting for one of the refresh calls allowed at once (WithMaxConcurrentRefreshes): %w", context.Cause(wctx))
	}
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

// refreshed installs a refresh's tokens, releases its requesters, and tells the application (the
// save's failure first, if it failed).
func (a *tokenActor) refreshed(c actor.Context, m messages.RefreshDone) {
	run := a.k.run
	a.k.run = nil
	took := time.Since(run.started)
	expiry := m.Tokens.Expiry
	if floor := time.Now().Add(a.minInterval()); !expiry.IsZero() && expiry.Before(floor) {
		expiry = floor // a lifetime below the floor is taken as the floor
	}
	a.install(c, m.Tokens, expiry)
	a.behavior.Become(a.valid)
	// Release first, end the span after (at the release's time): span processors run on this
	// goroutine, and a slow exporter must not hold the parked requests.
	at := time.Now()
	n := run.pending.Resolve(messages.TokenReply{Token: m.Tokens.Access, Auth: a.auth, Gen: a.k.gen, Refresh: run.sc})
	if s := a.h.snap.Load(); s != nil && n > 0 {
		s.markUsed()
	}
	endSpan(run, telemetry.RefreshSuccess, a.k.gen, n, nil, at)
	gen := a.k.gen
	if m.SaveErr != nil {
		a.log(slog.LevelError, "token store: saving the refreshed tokens failed; they are used from memory", "error", m.SaveErr)
		a.event(func(e TokenEvents) { e.SaveFailed(gen, m.SaveErr) })
	}
	a.event(func(e TokenEvents) { e.TokenRefreshed(gen, m.Tokens.Expiry, run.proactive, n, took) })
}

// refreshFailed ends a refresh that failed: the session, if the failure is permanent; else only the
// wait of its requesters, with ErrRefreshFailed.
func (a *tokenActor) refreshFailed(c actor.Context, m messages.RefreshFailed) {
	if m.Permanent {
		a.expire(m.Err, 0)
		return
	}
	a.log(slog.LevelWarn, "token refresh failed; credentials kept", "error", m.Err)
	if m.Rotated != "" {
		a.creds.Refresh = m.Rotated // the one sent is spent; the next refresh sends this one
	}
	run := a.k.run
	a.k.run = nil
	a.behavior.Become(a.valid)
	err := fmt.Errorf("%w: %w", messages.ErrRefreshFailed, m.Err)
	at := time.Now()
	n := run.pending.Resolve(messages.TokenReply{Err: err, Refresh: run.sc})
	endSpan(run, telemetry.RefreshFailed, 0, n, err, at)
	if run.proactive && a.usable() {
		// The old token still works; try again before it expires (not sooner than the minimum
		// interval), rather than waiting for it to.
		a.schedule(c)
	}
}

// expire ends the session: credentials cleared, every parked requester failed, one event. failed
// counts requesters already failed by the caller.
func (a *tokenActor) expire(cause error, failed int) {
	a.k.stopTimer()
	a.creds, a.expiry = messages.Tokens{}, time.Time{}
	a.h.snap.Store(nil)
	a.k.ended = fmt.Errorf("%w: %w", messages.ErrSessionExpired, cause)
	a.behavior.Become(a.expired)
	a.k.endedBy = nil
	if run := a.k.run; run != nil {
		a.k.endedBy = run.sc
		failed += run.pending.Resolve(messages.TokenReply{Err: a.k.ended, Refresh: run.sc})
		endSpan(run, telemetry.RefreshExpired, 0, failed, a.k.ended, time.Now())
	}
	a.log(slog.LevelWarn, "session expired", "error", a.k.ended, "failed_requests", failed)
	a.k.run = nil
	ended := a.k.ended
	a.event(func(e TokenEvents) { e.SessionExpired(ended, failed) })
}

// abandonRefresh gives up the running refresh (SetTokens replaced what it refreshes) and returns
// the Pending its requesters wait on.
func (a *tokenActor) abandonRefresh() *messages.Pending {
	run := a.k.run
	if run == nil {
		return nil
	}
	a.k.run = nil
	run.stopRetrying()
	run.abort()
	endSpan(run, telemetry.RefreshAbandoned, 0, 0, nil, time.Now())
	return run.pending
}

// replace installs credentials given by the application, answers everyone parked (waiting on
// parked, if not nil) with them, and saves them through the one writer, in order with the refreshes'
// saves; m.Done gets the save's outcome.
func (a *tokenActor) replace(c actor.Context, m messages.SetTokens, parked *messages.Pending) {
	seq := a.h.store.reserve()
	a.k.ended, a.k.endedBy = nil, nil
	a.install(c, m.Tokens, m.Tokens.Expiry)
	a.behavior.Become(a.valid)
	if parked != nil {
		if a.usable() {
			parked.Resolve(messages.TokenReply{Token: a.creds.Access, Auth: a.auth, Gen: a.k.gen})
		} else if a.canRefresh() {
			a.startRefresh(c, false, parked, time.Time{}) // the refresh the parked requesters are waiting for
		} else {
			a.k.run = &refreshRun{pending: parked} // so that expire fails them with the session's end
			a.expire(errors.New("no refresh token"), 0)
		}
	}
	gen := a.k.gen
	a.event(func(e TokenEvents) { e.TokensReplaced(gen) })

	h, t, done, events := a.h, m.Tokens, m.Done, a.cfg.Events
	h.background.Add(1)
	go func() {
		defer h.background.Done()
		err := h.store.save(seq, t)
		if err != nil && events != nil {
			safely(func() { events.SaveFailed(gen, err) })
		}
		if done != nil {
			done <- err
		}
	}()
}
