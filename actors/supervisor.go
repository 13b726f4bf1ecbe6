package actors

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// RetryPolicy is a complete retry policy: every field set (the engine fills in its defaults before
// it gets here). It is a value: the supervisor and every request read it, nobody changes it.
type RetryPolicy struct {
	MaxRetries     int           // retries after the first attempt; 0: none
	BaseDelay      time.Duration // first backoff ceiling
	MaxDelay       time.Duration // backoff ceiling cap
	MaxElapsed     time.Duration // no retry starts later than this after the logical request began
	MaxRetryAfter  time.Duration // a longer server-sent Retry-After is not waited for; cool-downs end by then
	AttemptTimeout time.Duration // bounds one attempt until its response headers; 0: none
	// Decide says whether an attempt's outcome is worth another attempt, and why.
	Decide func(req *http.Request, resp *http.Response, err error) (reason string, retry bool)
	// The retry budget, per host: retries may add BudgetRatio of the logical requests of the last
	// BudgetWindow, plus BudgetPerSecond a second. BudgetRatio < 0: no budget.
	BudgetRatio     float64
	BudgetPerSecond int
	BudgetWindow    time.Duration
	// IdempotencyKeys gives every POST and PATCH without an Idempotency-Key header one, made by NewKey,
	// kept for every attempt of the logical request.
	IdempotencyKeys bool
	NewKey          func() string
}

// maxBudgetHosts bounds the per-host budgets kept; requests to further hosts share one budget.
const maxBudgetHosts = 1024

// Supervisor is the handle of the supervisor actor, which owns what every request shares: the retry
// budgets and the per-host cool-downs. Request actors ask it before each retry and report their
// panics to it. The hot path (a first attempt) sends it nothing: it counts the request in a
// lock-free budget and reads the published cool-downs. It is safe for concurrent use.
type Supervisor struct {
	policy RetryPolicy
	logger *slog.Logger
	root   *actor.RootContext
	pid    *actor.PID

	cool     atomic.Pointer[map[string]coolDown] // published by the actor; nil when no host cools down
	budgets  sync.Map                            // host → *retry.Budget
	hosts    atomic.Int32                        // entries in budgets
	overflow *retry.Budget                       // shared by hosts past maxBudgetHosts
	faultAt  atomic.Int64                        // when a telemetry fault was last logged (Unix ns)

	background sync.WaitGroup // the prune timer, waited for by Stop
	stopOnce   sync.Once
	stopped    chan struct{} // closed once the actor is stopped: nothing is answered after
}

// RetryEvents receives what the supervisor tells the application. Its methods are called on the
// supervisor's goroutine and must not block; a panic in one is ignored.
type RetryEvents interface {
	// RetryScheduled: a logical request (or a refresh call) to host will make attempt attempt after
	// delay, because of reason.
	RetryScheduled(host, method string, attempt int, delay time.Duration, reason string)
	// RetryBudgetExhausted: a retry was due (because of reason) but host's retry budget refused it.
	RetryBudgetExhausted(host, method, reason string)
}

// SupervisorConfig configures the supervisor actor.
type SupervisorConfig struct {
	Policy RetryPolicy
	Events RetryEvents // nil: none
	Logger *slog.Logger
	Name   string // the actor's name in its system, unique there; "": one of protoactor's making
}

// SpawnSupervisor starts the supervisor actor in system.
func SpawnSupervisor(system *actor.ActorSystem, cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy.Decide == nil {
		return nil, errors.New("actors: a retry policy needs a Decide function")
	}
	p := cfg.Policy
	s := &Supervisor{
		policy:   p,
		logger:   cfg.Logger,
		root:     system.Root,
		stopped:  make(chan struct{}),
		overflow: retry.NewBudget(p.BudgetRatio, p.BudgetPerSecond, p.BudgetWindow),
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &supervisorActor{s: s, events: cfg.Events, cool: map[string]coolDown{}}
	})
	pid, err := spawn(system, cfg.Name, "supervisor", props)
	if err != nil {
		return nil, err
	}
	s.pid = pid
	return s, nil
}

// budget is host's retry budget, made on first use.
func (s *Supervisor) budget(host string) *retry.Budget {
	if b, ok := s.budgets.Load(host); ok {
		return b.(*retry.Budget)
	}
	if s.hosts.Load() >= maxBudgetHosts {
		return s.overflow
	}
	p := s.policy
	v, loaded := s.budgets.LoadOrStore(host, retry.NewBudget(p.BudgetRatio, p.BudgetPerSecond, p.BudgetWindow))
	b := v.(*retry.Budget)
	if !loaded {
		s.hosts.Add(1)
	}
	return b
}

// coolDown is one host's pause: requests wait until until; the server asked for at (later, when
// the policy capped the wait), with an answer of status.
type coolDown struct {
	until, at time.Time
	status    int
}

// coolingUntil is host's cool-down, if one is in force at now.
func (s *Supervisor) coolingUntil(host string, now time.Time) (coolDown, bool) {
	m := s.cool.Load()
	if m == nil {
		return coolDown{}, false
	}
	c, ok := (*m)[host]
	return c, ok && now.Before(c.until)
}

// coolDown asks the actor to hold every request to host until until (the server asked for at, with
// an answer of status), and waits until it does.
func (s *Supervisor) coolDown(ctx context.Context, host string, until, at time.Time, status int) {
	done := make(chan struct{})
	s.root.Send(s.pid, messages.CoolDown{Host: host, Until: until, At: at, Status: status, Done: done})
	select {
	case <-done:
	case <-ctx.Done():
	case <-s.stopped:
	}
}

// askRetry asks the actor for a retry; nil means go ahead.
func (s *Supervisor) askRetry(ctx context.Context, m messages.RetryAsk) error {
	r := make(chan error, 1)
	m.Reply = r
	s.root.Send(s.pid, m)
	select {
	case err := <-r:
		return err
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-s.stopped:
		return messages.ErrClosed
	}
}

// reportPanic hands a request actor's panic to the supervisor, which logs it; once the supervisor
// is stopped it is logged here.
func (s *Supervisor) reportPanic(m messages.RequestPanicked) {
	select {
	case <-s.stopped:
		logPanic(s.logger, m)
	default:
		s.root.Send(s.pid, m)
	}
}

// reportTelemetryFault logs a panic of the application's telemetry code, at most once a minute:
// such code tends to panic on every request.
func (s *Supervisor) reportTelemetryFault(m messages.RequestPanicked) {
	now := time.Now().UnixNano()
	last := s.faultAt.Load()
	if (last != 0 && now-last < int64(time.Minute)) || !s.faultAt.CompareAndSwap(last, now) {
		return
	}
	s.reportPanic(m)
}

func logPanic(l *slog.Logger, m messages.RequestPanicked) {
	msg := "request panicked; its caller got ErrRequestPanicked"
	if m.Telemetry {
		msg = "the application's telemetry panicked on a request's span; the request went on (logged at most once a minute)"
	}
	safely(func() {
		l.ErrorContext(trace.ContextWithSpanContext(context.Background(), m.Trace), msg,
			"method", m.Method, "host", m.Host, "panic", m.Value, "stack", string(m.Stack))
	})
}

// Stop stops the actor and its timer, returning by ctx's deadline. Requests waiting on it get
// ErrClosed. Safe to call twice.
func (s *Supervisor) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		err = stopActor(ctx, s.root, s.pid, &s.background)
		close(s.stopped)
	})
	return err
}

// supervisorActor owns the cool-downs (the only writer of the published map) and charges the
// budgets for retries.
type supervisorActor struct {
	s      *Supervisor
	events RetryEvents
	cool   map[string]coolDown
	timer  *time.Timer // fires when the earliest cool-down ends
}

// Receive reads like the protocol: asks for retries, cool-downs, panics of request actors.
func (a *supervisorActor) Receive(c actor.Context) {
	defer a.recoverPanic(c)
	switch m := c.Message().(type) {
	case messages.RetryAsk:
		a.retry(m)
	case messages.CoolDown:
		a.coolDown(c, m)
	case messages.PruneCoolDowns:
		a.prune(c)
	case messages.RequestPanicked:
		logPanic(a.s.logger, m)
	case *actor.Stopping, *actor.Restarting:
		a.stopTimer() // a timer of a replaced incarnation must not hold Stop
	}
}

func (a *supervisorActor) retry(m messages.RetryAsk) {
	if !a.s.budget(m.Host).TryRetry(time.Now()) {
		a.emit(func(e RetryEvents) { e.RetryBudgetExhausted(m.Host, m.Method, m.Reason) })
		m.Reply <- messages.ErrRetryBudgetExhausted
		return
	}
	a.emit(func(e RetryEvents) { e.RetryScheduled(m.Host, m.Method, m.Attempt, m.Delay, m.Reason) })
	m.Reply <- nil
}

func (a *supervisorActor) coolDown(c actor.Context, m messages.CoolDown) {
	if m.Until.After(a.cool[m.Host].until) {
		a.cool[m.Host] = coolDown{until: m.Until, at: m.At, status: m.Status}
		a.publishCool(c, time.Now())
	}
	if m.Done != nil {
		close(m.Done)
	}
}

func (a *supervisorActor) prune(c actor.Context) {
	a.timer = nil
	a.publishCool(c, time.Now())
}

// publishCool drops ended cool-downs, publishes a copy of the rest, and arms the timer for the
// earliest end.
func (a *supervisorActor) publishCool(c actor.Context, now time.Time) {
	var next time.Time
	for h, cd := range a.cool {
		if !now.Before(cd.until) {
			delete(a.cool, h)
		} else if next.IsZero() || cd.until.Before(next) {
			next = cd.until
		}
	}
	if len(a.cool) == 0 {
		a.s.cool.Store(nil)
	} else {
		m := make(map[string]coolDown, len(a.cool))
		for h, cd := range a.cool {
			m[h] = cd
		}
		a.s.cool.Store(&m)
	}
	a.stopTimer()
	if next.IsZero() {
		return
	}
	self, root := c.Self(), c.ActorSystem().Root
	a.s.background.Add(1)
	a.timer = time.AfterFunc(next.Sub(now), func() {
		defer a.s.background.Done()
		root.Send(self, messages.PruneCoolDowns{})
	})
}

func (a *supervisorActor) stopTimer() {
	if a.timer != nil && a.timer.Stop() {
		a.s.background.Done() // the callback will never run
	}
	a.timer = nil
}

func (a *supervisorActor) emit(f func(RetryEvents)) {
	if a.events != nil {
		safely(func() { f(a.events) })
	}
}

// recoverPanic keeps a bug in a handler from wiping the actor's state (protoactor would restart it
// empty) and answers the sender of the failed message.
func (a *supervisorActor) recoverPanic(c actor.Context) {
	r := recover()
	if r == nil {
		return
	}
	err := recovered(a.s.logger, context.Background(), "retry supervisor", r)
	switch m := c.Message().(type) {
	case messages.RetryAsk:
		select {
		case m.Reply <- err:
		default:
		}
	case messages.CoolDown:
		if m.Done != nil {
			close(m.Done)
		}
	}
}
