package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/resilientclient/resilient/messages"
)

// The token actor's timers: the proactive refresh of the current generation, and the idle check
// that passivates an unused family's actor.

// schedule arms the proactive refresh of the current generation (see proactiveDelay). It fires only
// into a live actor: the timer is stopped on every install, restart and shutdown.
func (a *tokenActor) schedule(c actor.Context) {
	if a.expiry.IsZero() || a.cfg.Refresh == nil || a.cfg.Skew <= 0 {
		return
	}
	wait, ok := proactiveDelay(time.Now(), a.expiry, a.k.lastStart, a.cfg.Skew, a.minInterval())
	if !ok {
		return
	}
	gen, self, root, h := a.k.gen, c.Self(), c.ActorSystem().Root, a.h
	a.k.timer = time.AfterFunc(wait, func() {
		if !h.isGone() {
			root.Send(self, messages.RefreshDue{Gen: gen})
		}
	})
}

// proactiveDelay is how long from now the proactive refresh of a token expiring at expiry starts:
// skew before expiry, but not before half its remaining life, and not sooner than minInterval after
// the last refresh started (lastStart) unless that would pass nine tenths of the remaining life (a
// token in use is renewed before it runs out). ok is false for a token already expired.
func proactiveDelay(now, expiry, lastStart time.Time, skew, minInterval time.Duration) (time.Duration, bool) {
	life := expiry.Sub(now)
	if life <= 0 {
		return 0, false
	}
	wait := life - min(skew, life/2)
	if !lastStart.IsZero() {
		wait = max(wait, min(lastStart.Add(minInterval).Sub(now), life-life/10))
	}
	return wait, true
}

func (a *tokenActor) minInterval() time.Duration {
	if a.cfg.MinInterval > 0 {
		return a.cfg.MinInterval
	}
	return DefaultMinRefreshInterval
}

// armIdle schedules the next IdleCheck, if the actor is ever passivated.
func (a *tokenActor) armIdle(c actor.Context) {
	if a.cfg.Idle <= 0 || a.cfg.OnIdle == nil || a.k.closed {
		return
	}
	if a.k.idle != nil {
		a.k.idle.Stop()
	}
	self, root, h := c.Self(), c.ActorSystem().Root, a.h
	a.k.idle = time.AfterFunc(a.cfg.Idle, func() {
		if !h.isGone() {
			root.Send(self, messages.IdleCheck{})
		}
	})
}

// idleCheck offers the actor for passivation when nothing of its own is under way: no refresh (its
// requesters are parked on it) and no failed save (the store would lag behind memory). Whether
// requests still use it is OnIdle's to judge. The check repeats until the actor is stopped.
func (a *tokenActor) idleCheck(c actor.Context) {
	if a.k.closed {
		return
	}
	if a.k.run == nil && a.h.Health() == nil {
		safely(a.cfg.OnIdle)
	}
	a.armIdle(c)
}

// passivate shuts the actor down if it is at rest (see TokenHandle.Passivate), and says whether it did.
func (a *tokenActor) passivate() bool {
	if a.k.closed {
		return true
	}
	if a.k.run != nil || a.h.Health() != nil {
		return false
	}
	a.shutdown()
	return true
}
