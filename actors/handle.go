package actors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/messages"
)

// Snapshot is an immutable view of the current token, published by the token actor so that the hot
// path (a valid token) costs one atomic load instead of a message round trip. Only the token actor
// ever stores one; every change of credentials still goes through its mailbox.
type Snapshot struct {
	Header string    // the Authorization header value, "Bearer " + token
	Gen    uint64    // the token's generation
	Expiry time.Time // zero when unknown
	values []string  // []string{Header}, made once: every request shares it (read-only)
}

// usableAt reports whether the token may still be sent at now.
func (s *Snapshot) usableAt(now time.Time) bool {
	return s.Expiry.IsZero() || now.Before(s.Expiry)
}

// Grant is a token handed to one request: the header value to send and its generation, which the
// request reports back if the API rejects it.
type Grant struct {
	Header string
	Gen    uint64
	Expiry time.Time // the token's expiry when known (zero otherwise), for integrations that cache it
	values []string  // []string{Header} when it came from the snapshot, shared and read-only
	// When the request was parked behind a refresh: when it asked and when it was answered (both
	// zero when it was answered at once), and the refresh's span.
	ParkedAt, ReleasedAt time.Time
	Refresh              trace.SpanContext
}

// headerValues is the Authorization header's value slice: the snapshot's own (shared, never
// modified), or a new one.
func (g *Grant) headerValues() []string {
	if g.values != nil {
		return g.values
	}
	return []string{g.Header}
}

// Parked reports whether the request waited for a refresh.
func (g *Grant) Parked() bool { return !g.ParkedAt.IsZero() }

// TokenHandle is how requests talk to a running token actor. It is safe for concurrent use.
type TokenHandle struct {
	tel  *telemetry.T // the parked-requests gauge
	root *actor.RootContext
	pid  *actor.PID
	snap atomic.Pointer[Snapshot]

	background sync.WaitGroup // refresh goroutines and armed timers, waited for by Stop
	stopOnce   sync.Once
	stopped    chan struct{} // closed once Stop has stopped the actor: nothing is answered after
}

// SpawnToken starts a token actor in system with cfg. Defaults: a discarding logger and a one-minute
// refresh timeout when cfg leaves them unset.
func SpawnToken(system *actor.ActorSystem, cfg TokenConfig) (*TokenHandle, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RefreshTimeout <= 0 {
		cfg.RefreshTimeout = time.Minute
	}
	h := &TokenHandle{root: system.Root, stopped: make(chan struct{}), tel: cfg.Telemetry}
	props := actor.PropsFromProducer(func() actor.Actor { return newTokenActor(cfg, h) })
	pid, err := system.Root.SpawnNamed(props, "token")
	if err != nil {
		return nil, err
	}
	h.pid = pid
	return h, nil
}

// Acquire returns the token to send: from the published snapshot when it is valid (no message),
// else from the token actor, parking until a refresh ends if one must run. It returns early with
// context.Cause(ctx) when ctx ends (a parked request just stops waiting).
func (h *TokenHandle) Acquire(ctx context.Context) (Grant, error) {
	return h.AcquireAt(ctx, time.Now())
}

// AcquireAt is Acquire for a caller that has just read the clock: now decides whether the snapshot
// is still usable.
func (h *TokenHandle) AcquireAt(ctx context.Context, now time.Time) (Grant, error) {
	if s := h.snap.Load(); s != nil && s.usableAt(now) {
		return Grant{Header: s.Header, Gen: s.Gen, Expiry: s.Expiry, values: s.values}, nil
	}
	return h.ask(ctx, func(r chan<- messages.TokenReply, sc *trace.SpanContext) any {
		return messages.NeedToken{Reply: r, Trace: sc}
	})
}

// Header is the Authorization value the current token is sent with ("" when there is none), read
// from the published snapshot, for scrubbing it out of the error texts the engine builds.
func (h *TokenHandle) Header() string {
	if s := h.snap.Load(); s != nil {
		return s.Header
	}
	return ""
}

// AcquireByMessage is Acquire without the snapshot: always a NeedToken round trip through the
// mailbox. It exists to measure what the snapshot saves.
func (h *TokenHandle) AcquireByMessage(ctx context.Context) (Grant, error) {
	return h.ask(ctx, func(r chan<- messages.TokenReply, sc *trace.SpanContext) any {
		return messages.NeedToken{Reply: r, Trace: sc}
	})
}

// Rejected reports that the API answered 401 to a request sent with generation gen, and returns the
// token to retry with: the current one if gen was already replaced, else the one a refresh brings.
func (h *TokenHandle) Rejected(ctx context.Context, gen uint64) (Grant, error) {
	return h.ask(ctx, func(r chan<- messages.TokenReply, sc *trace.SpanContext) any {
		return messages.TokenRejected{Gen: gen, Reply: r, Trace: sc}
	})
}

// ReportRejected reports a 401 for generation gen without waiting for a new token (for a request
// that cannot be resent).
func (h *TokenHandle) ReportRejected(gen uint64) {
	h.root.Send(h.pid, messages.TokenRejected{Gen: gen})
}

// ask sends the message made by mk and waits for the reply or for ctx to end. The message names the
// requester's span (from ctx), which a refresh it starts links to. On an error the Grant still says
// whether and how long the request was parked, and which refresh failed it.
func (h *TokenHandle) ask(ctx context.Context, mk func(chan<- messages.TokenReply, *trace.SpanContext) any) (Grant, error) {
	if ctx.Err() != nil {
		return Grant{}, ctxErr(ctx)
	}
	r := make(chan messages.TokenReply, 1)
	asked := time.Now()
	var sc *trace.SpanContext
	if s := trace.SpanContextFromContext(ctx); s.IsValid() {
		sc = &s // only traced requests pay for it
	}
	h.root.Send(h.pid, mk(r, sc))
	var rep messages.TokenReply
	select {
	case rep = <-r: // the actor answers at once
	case <-ctx.Done():
		select {
		case rep = <-r: // the answer came too: if it parked us, leave
			if rep.Wait != nil {
				rep.Wait.Leave()
			}
		default:
		}
		return Grant{}, ctxErr(ctx)
	case <-h.stopped: // a message that reached a stopped actor is never answered
		return Grant{}, messages.ErrClosed
	}
	var g Grant
	if p := rep.Wait; p != nil {
		// Parked behind a refresh: wait for its outcome with everyone else. (The actor resolves
		// every Pending before it stops, so no other wake-up is needed.)
		h.tel.Parking(ctx, 1) // (the actor counted us in when it parked us)
		select {
		case <-p.Done():
			rep = p.Reply()
		case <-ctx.Done():
			p.Leave()
		}
		h.tel.Parking(ctx, -1)
		g.ParkedAt, g.ReleasedAt = asked, time.Now()
		if rep.Wait != nil { // still the parking answer: ctx ended first
			return g, ctxErr(ctx)
		}
	}
	if rep.Refresh != nil {
		g.Refresh = *rep.Refresh
	}
	if rep.Err != nil {
		return g, rep.Err
	}
	g.Gen, g.values = rep.Gen, rep.Auth
	if s := h.snap.Load(); s != nil && s.Gen == g.Gen {
		g.Expiry = s.Expiry // installed before the reply was sent
	}
	if len(rep.Auth) == 1 {
		g.Header = rep.Auth[0]
	} else {
		g.Header = "Bearer " + rep.Token
	}
	return g, nil
}

// ctxErr is why ctx ended: ErrClosed when the engine closed it, else context.Canceled or
// context.DeadlineExceeded as the caller's context says.
func ctxErr(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, messages.ErrClosed) {
		return cause
	}
	return ctx.Err()
}

// Set replaces the credentials (a new login) and waits until they are in force.
func (h *TokenHandle) Set(ctx context.Context, t messages.Tokens) error {
	done := make(chan error, 1)
	h.root.Send(h.pid, messages.SetTokens{Tokens: t, Done: done})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-h.stopped:
		return messages.ErrClosed
	}
}

// Stop answers every parked requester with ErrClosed, stops the actor, and waits for its refresh and
// timers to finish (a running refresh is cancelled). It is safe to call more than once.
func (h *TokenHandle) Stop(ctx context.Context) error {
	var err error
	h.stopOnce.Do(func() {
		done := make(chan struct{})
		h.root.Send(h.pid, messages.Shutdown{Done: done})
		select {
		case <-done:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		stopErr := h.root.StopFuture(h.pid).Wait()
		close(h.stopped)
		waited := make(chan struct{})
		go func() { h.background.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			err = errors.Join(err, context.Cause(ctx))
		}
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	})
	return err
}
