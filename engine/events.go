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
// *TokensReplaced, *RetryScheduled or *RetryBudgetExhausted. Switch on the concrete type; more types
// may be added.
type Event interface {
	event()
}

// TokenRefreshed: a refresh succeeded, the new pair is in force (and saved, with a TokenStore), and
// every request that waited for it was released.
type TokenRefreshed struct {
	Generation uint64        // the new token's generation; the first token is 1
	Expiry     time.Time     // zero when unknown
	Proactive  bool          // started ahead of expiry, not by a 401 or an expired token
	Released   int           // parked requests answered with the new token
	Took       time.Duration // from the start of the refresh call to its answer
}

// SessionExpired: the credentials could not be refreshed and were cleared. Requests fail with
// ErrSessionExpired until SetTokens; sign the user in again. Published once per session end.
type SessionExpired struct {
	Err    error // wraps ErrSessionExpired and the cause; never contains a token
	Failed int   // parked requests that failed with it
}

// TokensReplaced: the application set new credentials with SetTokens.
type TokensReplaced struct {
	Generation uint64
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

// toEvent converts a message of the actor protocol into the public event, or nil for anything else
// on the actor system's event stream (dead letters, supervision events).
func toEvent(m any) Event {
	switch m := m.(type) {
	case messages.TokenRefreshed:
		return &TokenRefreshed{Generation: m.Gen, Expiry: m.Expiry, Proactive: m.Proactive, Released: m.Released, Took: m.Duration}
	case messages.SessionExpired:
		return &SessionExpired{Err: m.Err, Failed: m.Failed}
	case messages.TokensReplaced:
		return &TokensReplaced{Generation: m.Gen}
	case messages.RetryScheduled:
		return &RetryScheduled{Host: m.Host, Method: m.Method, Attempt: m.Attempt, Delay: m.Delay, Reason: m.Reason}
	case messages.RetryBudgetExhausted:
		return &RetryBudgetExhausted{Host: m.Host, Method: m.Method, Reason: m.Reason}
	}
	return nil
}

// subscribers gives every subscriber an actor of its own: the token actor publishes on the event
// stream, whose handler only drops the event into the subscriber's mailbox, so a slow subscriber
// delays nobody but itself.
type subscribers struct {
	system  *actor.ActorSystem
	onPanic func(error)

	mu     sync.Mutex // guards closed and subs
	closed bool
	subs   map[*actor.PID]*eventstream.Subscription
}

func (s *subscribers) add(fn func(Event)) (unsubscribe func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || fn == nil {
		return func() {}
	}
	pid := s.system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if ev, ok := c.Message().(Event); ok {
			s.deliver(fn, ev)
		}
	}))
	root := s.system.Root
	sub := s.system.EventStream.Subscribe(func(m any) {
		if ev := toEvent(m); ev != nil {
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
				s.system.EventStream.Unsubscribe(sub)
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
		s.system.EventStream.Unsubscribe(sub)
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
