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
	Header string      // the Authorization header value: the scheme (Tokens.Scheme), a space, the token
	Gen    uint64      // the token's generation
	Expiry time.Time   // zero when unknown
	values []string    // []string{Header}, made once: every request shares it (read-only)
	used   atomic.Bool // a request was handed this token: only a used token is renewed proactively
}

// markUsed records that a request was handed the token. Reading first keeps the hot path from
// writing a shared cache line on every request.
func (s *Snapshot) markUsed() {
	if !s.used.Load() {
		s.used.Store(true)
	}
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

// TokenHandle is how requests talk to a running token actor. It also holds what must outlive an
// incarnation of the actor (see tokenActor): the store's one writer, the kept state, the refresh
// goroutines. It is safe for concurrent use.
type TokenHandle struct {
	tel   *telemetry.T // the parked-requests gauge
	root  *actor.RootContext
	pid   *actor.PID
	snap  atomic.Pointer[Snapshot]
	store *persister
	kept  kept // the actor's; see kept

	life  context.Context    // parent of every refresh call; ended when Close's deadline passes
	abort context.CancelFunc // ends life

	background sync.WaitGroup // refresh and save goroutines, waited for by Stop
	stopMu     sync.Mutex     // serialises stop; guards stopped and stopErr
	stopped    bool
	stopErr    error
	gen        atomic.Uint64 // kept.gen, for Generation
	goneOnce   sync.Once
	gone       chan struct{} // closed once the actor is stopped: nothing is answered after
}

// SpawnToken starts a token actor in system with cfg. Defaults: a discarding logger and a one-minute
// refresh timeout when cfg leaves them unset. cfg.Store is required.
func SpawnToken(system *actor.ActorSystem, cfg TokenConfig) (*TokenHandle, error) {
	h, cfg, err := newTokenHandle(system, cfg)
	if err != nil {
		return nil, err
	}
	if err := h.spawn(system, cfg.Name, actor.PropsFromProducer(func() actor.Actor { return newTokenActor(cfg, h) })); err != nil {
		return nil, err
	}
	return h, nil
}

// newTokenHandle checks cfg, fills in its defaults, and makes the handle of a token actor not yet
// spawned.
func newTokenHandle(system *actor.ActorSystem, cfg TokenConfig) (*TokenHandle, TokenConfig, error) {
	if cfg.Store == nil {
		return nil, cfg, errors.New("engine: the token actor needs a store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RefreshTimeout <= 0 {
		cfg.RefreshTimeout = time.Minute
	}
	h := &TokenHandle{root: system.Root, gone: make(chan struct{}), tel: cfg.Telemetry,
		store: newPersister(cfg.Store, cfg.RefreshTimeout)}
	h.kept.gen = cfg.FirstGen
	h.gen.Store(cfg.FirstGen)
	h.life, h.abort = context.WithCancel(context.Background())
	return h, cfg, nil
}

// spawn starts the actor made by props under name (a name of protoactor's making when "").
func (h *TokenHandle) spawn(system *actor.ActorSystem, name string, props *actor.Props) error {
	pid, err := spawn(system, name, "token", props)
	if err != nil {
		h.abort()
		return err
	}
	h.pid = pid
	return nil
}

// Health is the last save's error (wrapping messages.ErrSaveFailed) until a later save succeeds;
// nil when the store holds the credentials in force.
func (h *TokenHandle) Health() error { return h.store.err() }

// closeGone marks the actor as gone: every wait for it ends with ErrClosed.
func (h *TokenHandle) closeGone() { h.goneOnce.Do(func() { close(h.gone) }) }

func (h *TokenHandle) isGone() bool {
	select {
	case <-h.gone:
		return true
	default:
		return false
	}
}

// AcquireAt returns the token to send: from the published snapshot when it is valid at now (no
// message), else from the token actor, parking until a refresh ends if one must run. It returns
// early with context.Cause(ctx) when ctx ends (a parked request just stops waiting).
func (h *TokenHandle) AcquireAt(ctx context.Context, now time.Time) (Grant, error) {
	if s := h.snap.Load(); s != nil && s.usableAt(now) {
		s.markUsed()
		return Grant{Header: s.Header, Gen: s.Gen, Expiry: s.Expiry, values: s.values}, nil
	}
	return h.acquireByMessage(ctx)
}

// Header is the Authorization value the current token is sent with ("" when there is none), read
// from the published snapshot, for scrubbing it out of the error texts the engine builds.
func (h *TokenHandle) Header() string {
	if s := h.snap.Load(); s != nil {
		return s.Header
	}
	return ""
}

// acquireByMessage asks the token actor, without the snapshot.
func (h *TokenHandle) acquireByMessage(ctx context.Context) (Grant, error) {
	return h.ask(ctx, func(r chan<- messages.TokenReply, ask *messages.Ask, dl time.Time, sc *trace.SpanContext) any {
		return messages.NeedToken{Reply: r, Ask: ask, Deadline: dl, Trace: sc}
	})
}

// Rejected reports that the API answered 401 to a request sent with generation gen, and returns the
// token to retry with: the current one if gen was already replaced, else the one a refresh brings.
func (h *TokenHandle) Rejected(ctx context.Context, gen uint64) (Grant, error) {
	return h.ask(ctx, func(r chan<- messages.TokenReply, ask *messages.Ask, dl time.Time, sc *trace.SpanContext) any {
		return messages.TokenRejected{Gen: gen, Reply: r, Ask: ask, Deadline: dl, Trace: sc}
	})
}

// ReportRejected reports a 401 for generation gen without waiting for a new token (for a request
// that cannot be resent).
func (h *TokenHandle) ReportRejected(gen uint64) {
	h.root.Send(h.pid, messages.TokenRejected{Gen: gen})
}

// ask sends the message made by mk and waits for the reply or for ctx to end. The message names the
// requester's span (from ctx), which a refresh it starts links to, and its deadline, up to which a
// refresh keeps retrying. On an error the Grant still says whether and how long the request was
// parked, and which refresh failed it. A requester is counted as parked (and then as released or
// failed) exactly when it waits: one that gives up first is not counted.
func (h *TokenHandle) ask(ctx context.Context, mk func(chan<- messages.TokenReply, *messages.Ask, time.Time, *trace.SpanContext) any) (Grant, error) {
	if ctx.Err() != nil {
		return Grant{}, ctxErr(ctx)
	}
	r := make(chan messages.TokenReply, 1)
	question := &messages.Ask{}
	asked := time.Now()
	var sc *trace.SpanContext
	if s := trace.SpanContextFromContext(ctx); s.IsValid() {
		sc = &s // only traced requests pay for it
	}
	dl, _ := ctx.Deadline()
	h.root.Send(h.pid, mk(r, question, dl, sc))
	var rep messages.TokenReply
	select {
	case rep = <-r: // the actor answers at once
	case <-ctx.Done():
		if question.Abandon() {
			return Grant{}, ctxErr(ctx) // the actor will neither park nor count us
		}
		select {
		case rep = <-r: // parked just now: its answer is on its way
		case <-h.gone:
			return Grant{}, messages.ErrClosed
		}
		if rep.Wait != nil && rep.Wait.Leave() {
			return Grant{}, ctxErr(ctx)
		}
	case <-h.gone: // a message that reached a stopped actor is never answered
		return Grant{}, messages.ErrClosed
	}
	var g Grant
	if p := rep.Wait; p != nil {
		// Parked behind a refresh: wait for its outcome with everyone else. (The actor resolves
		// every Pending before it stops, so no other wake-up is needed.)
		h.parking(ctx, 1)
		select {
		case <-p.Done():
		case <-ctx.Done():
			if p.Leave() {
				h.parking(ctx, -1)
				return Grant{ParkedAt: asked, ReleasedAt: time.Now()}, ctxErr(ctx)
			}
			<-p.Done() // counted as released: take the outcome
		}
		rep = p.Reply()
		h.parking(ctx, -1)
		g.ParkedAt, g.ReleasedAt = asked, time.Now()
	}
	if rep.Refresh != nil {
		g.Refresh = *rep.Refresh
	}
	if rep.Err != nil {
		return g, rep.Err
	}
	if len(rep.Auth) != 1 { // the actor always sends the header it made with the token
		return g, errors.New("engine: internal error: a token reply without its Authorization value")
	}
	g.Gen, g.values, g.Header = rep.Gen, rep.Auth, rep.Auth[0]
	if s := h.snap.Load(); s != nil && s.Gen == g.Gen {
		g.Expiry = s.Expiry // installed before the reply was sent
	}
	return g, nil
}

// parking counts parked requests in telemetry; a panicking meter must not break the request.
func (h *TokenHandle) parking(ctx context.Context, n int64) {
	safely(func() { h.tel.Parking(ctx, n) })
}

// ctxErr is why ctx ended: ErrClosed when the engine closed it, else context.Canceled or
// context.DeadlineExceeded as the caller's context says.
func ctxErr(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, messages.ErrClosed) {
		return cause
	}
	return ctx.Err()
}

// Set replaces the credentials (a new login) and waits until they are in force and saved. A failed
// save returns an error wrapping messages.ErrSaveFailed; the credentials are in force all the same.
// A pair CheckTokens refuses is neither installed nor saved, and its error is returned.
func (h *TokenHandle) Set(ctx context.Context, t messages.Tokens) error {
	if err := CheckTokens(t); err != nil {
		return err // neither installed nor saved
	}
	done := make(chan error, 1)
	h.root.Send(h.pid, messages.SetTokens{Tokens: t, Done: done})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-h.gone:
		return messages.ErrClosed
	}
}

// Stop answers every parked requester with ErrClosed and closes the actor. A refresh in progress
// makes no further call, but the call under way may finish and its result is saved: Stop waits for
// that (and for saves of SetTokens) until ctx ends, then cuts the call short and returns. A store
// call already running keeps its own bounded context; background retries of a failed save stop. Stop returns by ctx's deadline whatever
// protoactor's own stop waits do. It is safe to call more than once.
func (h *TokenHandle) Stop(ctx context.Context) error {
	_, err := h.stop(ctx, false)
	return err
}

// Passivate stops the actor as Stop does, but only if it is at rest: no refresh under way and no
// failed save (the store holds what is in force). The actor decides in its mailbox, so that nothing
// starts between the check and the stop. It reports whether the actor stopped (true also if it was
// stopped already). Its generation stays readable (Generation) for the next incarnation to go on from.
func (h *TokenHandle) Passivate(ctx context.Context) (bool, error) { return h.stop(ctx, true) }

// stop is Stop, or Passivate when ifIdle is set.
func (h *TokenHandle) stop(ctx context.Context, ifIdle bool) (bool, error) {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	if h.stopped {
		return true, h.stopErr
	}
	var err error
	if ifIdle {
		// No deadline on this wait: the actor answers at once (or is gone), and giving up early
		// would leave it free to stop after the caller decided it lives on.
		r := make(chan bool, 1)
		h.root.Send(h.pid, messages.Passivate{Reply: r})
		select {
		case ok := <-r:
			if !ok {
				return false, nil
			}
		case <-h.gone:
		}
	} else {
		done := make(chan struct{})
		h.root.Send(h.pid, messages.Shutdown{Done: done})
		select {
		case <-done:
		case <-h.gone:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	h.stopped = true
	if !waitFor(ctx, h.background.Wait) {
		err = errors.Join(err, context.Cause(ctx))
	}
	if perr := h.store.close(ctx); perr != nil && err == nil {
		err = perr
	}
	h.abort()
	h.closeGone()
	if serr := stopActor(ctx, h.root, h.pid, &h.background); serr != nil && err == nil {
		err = serr
	}
	h.stopErr = err
	return true, err
}

// Generation is the generation of the credentials last put in force (0 before any).
func (h *TokenHandle) Generation() uint64 { return h.gen.Load() }
