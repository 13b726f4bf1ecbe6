package actors

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// System is the process's one protoactor actor system, started on first use and never shut down:
// every engine spawns its actors in it (and stops them in Close). protoactor's idiom is one system
// per process, and building one is the expensive part (its process registry): an engine per
// tenant, or a test that makes hundreds of engines, would otherwise pay it each time. An idle
// system holds no goroutine. protoactor's own records are discarded: they would name no engine, and
// a library must not write to the application's default logger; what matters of them (a panic in
// an actor) the engines log to their own loggers.
func System() *actor.ActorSystem { return system() }

var system = sync.OnceValue(func() *actor.ActorSystem { return newSystem(nil) })

// newSystem starts a protoactor actor system configured for a library: its records go to logger
// from Warn up (protoactor logs every actor start and stop at Info), and its dead-letter throttle
// timer (a goroutine per burst of dead letters, one second by default) is kept to a millisecond so
// that nothing of it outlives an engine's Close noticeably. Tests make systems of their own with it.
func newSystem(logger *slog.Logger) *actor.ActorSystem {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	quiet := slog.New(minLevel{Handler: logger.Handler(), min: slog.LevelWarn})
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	smallRegistry(system)
	return system
}

// smallRegistry replaces the actor system's process registry, made for millions of actors (1,024
// concurrent maps of 32 shards each: some 65,000 live objects), with one concurrent map holding the
// same entries. An engine runs a handful of actors; the big registry costs megabytes of heap and,
// worse, every garbage collection of the application must scan it: measured with callgrind, that
// scanning was the largest part of what the engine added to a request on the hot path. It runs
// before anything but the system's own processes is registered, and nothing reads the registry
// concurrently yet.
func smallRegistry(system *actor.ActorSystem) {
	small := &actor.SliceMap{LocalPIDs: []cmap.ConcurrentMap{cmap.New()}}
	for _, bucket := range system.ProcessRegistry.LocalPIDs.LocalPIDs {
		if bucket.Count() == 0 {
			continue // (Items would start a goroutine per shard to find nothing)
		}
		for id, p := range bucket.Items() {
			small.LocalPIDs[0].Set(id, p)
		}
	}
	system.ProcessRegistry.LocalPIDs = small
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(a), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

// spawn starts props in system under name, or, when name is "", under a unique name protoactor
// makes from prefix.
func spawn(system *actor.ActorSystem, name, prefix string, props *actor.Props) (*actor.PID, error) {
	if name == "" {
		name = prefix + system.ProcessRegistry.NextId()
	}
	return system.Root.SpawnNamed(props, name)
}
