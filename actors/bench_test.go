package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/resilientclient/resilient/messages"
)

func benchSystem(b *testing.B) (*actor.ActorSystem, *TokenHandle) {
	system := NewSystem(nil)
	h, err := SpawnToken(system, TokenConfig{Tokens: messages.Tokens{Access: "t1", Expiry: time.Now().Add(time.Hour)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = h.Stop(context.Background())
		system.Shutdown()
	})
	return system, h
}

// BenchmarkAcquire compares the two ways a request can get a valid token: the published snapshot
// (one atomic load) and a NeedToken message through the token actor's mailbox.
func BenchmarkAcquire(b *testing.B) {
	_, h := benchSystem(b)
	ctx := context.Background()
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.Acquire(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.AcquireByMessage(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkSpawnRequestActor is what a protoactor actor per logical request would cost before it did
// any work: spawn it, send it one request, wait for its answer, stop it.
func BenchmarkSpawnRequestActor(b *testing.B) {
	system, _ := benchSystem(b)
	props := actor.PropsFromFunc(func(c actor.Context) {
		if r, ok := c.Message().(chan struct{}); ok {
			r <- struct{}{}
		}
	})
	b.ReportAllocs()
	for b.Loop() {
		pid := system.Root.Spawn(props)
		done := make(chan struct{}, 1)
		system.Root.Send(pid, done)
		<-done
		system.Root.Stop(pid)
	}
}
