package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/resilientclient/resilient/messages"
)

// Event is something the engine tells its subscribers: *TokenRefreshed, *SessionExpired,
// *TokensReplaced, *SaveFailed, *RetryScheduled or *RetryBudgetExhausted. Switch on the concrete type; more types
// may be added.
type Event interface {
	event()
}

// TokenRefreshed: a refresh succeeded, the new pair is in force, every request that waited for it
// was released, and its save has ended: saved, or a *SaveFailed event came first (see TokenStore).
type TokenRefreshed struct {
	Family     string        // the family's key (Engine.Family); "" for the engine's default family
	Generation uint64        // the new token's generation; the first token is 1
	Expiry     time.Time     // zero when unknown
	Proactive  bool          // started ahead of expiry, not by a 401 or an expired token
	Released   int           // parked requests answered with the new token
	Took       time.Duration // from the start of the refresh call to its answer
}

// SessionExpired: the credentials could not be refreshed and were cleared. Requests fail with
// ErrSessionExpired until SetTokens; sign the user in again. Published once per session end.
type SessionExpired struct {
	Family string // the family's key (Engine.Family); "" for the engine's default family
	Err    error  // wraps ErrSessionExpired and the cause; never contains a token
	Failed int    // parked requests that failed with it
}

// TokensReplaced: the application set new credentials with SetTokens.
type TokensReplaced struct {
	Family     string // the family's key (Engine.Family); "" for the engine's default family
	Generation uint64
}

// ErrSaveFailed: the TokenStore could not save the credentials in force (a Save failed, or did not
// return within the refresh timeout); they are used from memory at once, and the save is retried in
// the background (within the refresh timeout, until Close). *SaveFailed events and Engine.Health carry it.
var ErrSaveFailed = messages.ErrSaveFailed

// SaveFailed: the TokenStore could not save generation Generation (a refresh's or SetTokens'
// pair). The engine uses it from memory; Health returns Err until a later save succeeds.
type SaveFailed struct {
	Family     string // the family's key (Engine.Family); "" for the engine's default family
	Generation uint64
	Err        error // wraps ErrSaveFailed and the store's error
}

// RetryScheduled: a logical request (or a refresh call) failed in a way worth retrying, and the
// supervisor let it: attempt number Attempt will be sent after Delay.
type RetryScheduled struct {
	Host    string        // host[:port] of the request
	Method  string        // HTTP method
	Attempt int           // the attempt about to be sent: 2 for the first retry
	Delay   time.Duration // the server's Retry-After (capped), or the jittered backoff
	Reason  string        // why: "status_503", "status_429", "connection_reset", "timeout", ...
}

// RetryBudgetExhausted: a retry was due but the host's retry budget refused it; the request
// returned its last answer.
type RetryBudgetExhausted struct {
	Host   string
	Method string
	Reason string // why the refused retry was due
}

func (*RetryScheduled) event()       {}
func (*RetryBudgetExhausted) event() {}
func (*TokenRefreshed) event()       {}
func (*SessionExpired) event()       {}
func (*TokensReplaced) event()       {}
func (*SaveFailed) event()           {}

// publisher turns what the actors report into events on the engine's event stream, whose
// handlers only drop them into the subscribers' mailboxes (so it never blocks an actor). A family's
// token actor has a publisher naming its family.
type publisher struct {
	stream *eventstream.EventStream
	family string // "" for the default family and the supervisor
}

func (p publisher) TokenRefreshed(gen uint64, expiry time.Time, proactive bool, released int, took time.Duration) {
	p.stream.Publish(&TokenRefreshed{Family: p.family, Generation: gen, Expiry: expiry, Proactive: proactive, Released: released, Took: took})
}

func (p publisher) SessionExpired(err error, failed int) {
	p.stream.Publish(&SessionExpired{Family: p.family, Err: err, Failed: failed})
}

func (p publisher) TokensReplaced(gen uint64) {
	p.stream.Publish(&TokensReplaced{Family: p.family, Generation: gen})
}

func (p publisher) SaveFailed(gen uint64, err error) {
	p.stream.Publish(&SaveFailed{Family: p.family, Generation: gen, Err: err})
}

func (p publisher) RetryScheduled(host, method string, attempt int, delay time.Duration, reason string) {
	p.stream.Publish(&RetryScheduled{Host: host, Method: method, Attempt: attempt, Delay: delay, Reason: reason})
}

func (p publisher) RetryBudgetExhausted(host, method, reason string) {
	p.stream.Publish(&RetryBudgetExhausted{Host: host, Method: method, Reason: reason})
}

// subscribers gives every subscriber an actor of its own: the token actor publishes on the event
// stream, whose handler only drops the event into the subscriber's mailbox, so a slow subscriber
// delays nobody but itself.
type subscribers struct {
	system  *actor.ActorSystem
	stream  *eventstream.EventStream // the engine's
	name    string                   // prefix of the subscribers' actor names
	onPanic func(error)

	mu     sync.Mutex // guards closed and subs
	closed bool
	subs   map[*actor.PID]*eventstream.Subscription
}

// add subscribes fn to the events keep accepts (nil: all).
func (s *subscribers) add(fn func(Event), keep func(Event) bool) (unsubscribe func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || fn == nil {
		return func() {}
	}
	pid, err := s.system.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if ev, ok := c.Message().(Event); ok {
			s.deliver(fn, ev)
		}
	}), s.name+s.system.ProcessRegistry.NextId())
	if err != nil { // a name protoactor made is unique: this does not happen
		s.onPanic(fmt.Errorf("engine: starting a subscriber: %w", err))
		return func() {}
	}
	root := s.system.Root
	sub := s.stream.Subscribe(func(m any) {
		if ev, ok := m.(Event); ok && (keep == nil || keep(ev)) {
			root.Send(pid, ev)
		}
	})
	if s.subs == nil {
		s.subs = map[*actor.PID]*eventstream.Subscription{}
	}
	s.subs[pid] = sub
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if sub, ok := s.subs[pid]; ok {
				delete(s.subs, pid)
				s.stream.Unsubscribe(sub)
				s.system.Root.Poison(pid) // events already queued are still delivered
			}
		})
	}
}

// deliver runs one subscriber call; a panic is logged, not spread.
func (s *subscribers) deliver(fn func(Event), ev Event) {
	defer func() {
		if r := recover(); r != nil {
			s.onPanic(fmt.Errorf("engine: event subscriber panicked: %v", r))
		}
	}()
	fn(ev)
}

// close unsubscribes everyone and waits (bounded by ctx) until their queued events are delivered.
func (s *subscribers) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var futures []*actor.Future
	for pid, sub := range s.subs {
		s.stream.Unsubscribe(sub)
		futures = append(futures, s.system.Root.PoisonFuture(pid))
	}
	clear(s.subs)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, f := range futures {
			_ = f.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
