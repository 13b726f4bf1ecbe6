package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// The two things every actor of the engine does alike: turn a panic in a handler into an answer
// (and a log record), and stop within the caller's deadline.

// recovered turns the panic value r of the actor named who into an error, and logs it. The
// recovery path must never panic itself (a panic there would reach protoactor's supervisor), so a
// logger that panics is ignored.
func recovered(l *slog.Logger, ctx context.Context, who string, r any) error {
	err := fmt.Errorf("engine: internal error in the %s: %v", who, r)
	safely(func() { l.ErrorContext(ctx, who+" panicked", "error", err) })
	return err
}

// safely runs f, which calls code the engine does not control (a logger, an event sink), and
// swallows a panic in it: a state change of an actor must never be cut in half by one.
func safely(f func()) {
	defer func() { _ = recover() }()
	f()
}

// stopActor stops pid and then waits for background, each wait bounded by ctx: protoactor's
// StopFuture waits up to ten seconds on its own, and Close must return by its caller's deadline.
func stopActor(ctx context.Context, root *actor.RootContext, pid *actor.PID, background *sync.WaitGroup) error {
	var err error
	if !waitFor(ctx, func() { _ = root.StopFuture(pid).Wait() }) {
		err = context.Cause(ctx)
	}
	if !waitFor(ctx, background.Wait) {
		err = errors.Join(err, context.Cause(ctx))
	}
	return err
}

// waitFor runs wait on a goroutine of its own and reports whether it returned before ctx ended. (If
// not, the goroutine ends when wait does.)
func waitFor(ctx context.Context, wait func()) bool {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
