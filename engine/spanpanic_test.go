package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// panicOnRefreshEnd is a span processor with a bug: it panics when a token refresh span ends.
type panicOnRefreshEnd struct{}

func (panicOnRefreshEnd) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (panicOnRefreshEnd) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.Name() == "token refresh" {
		panic("exporter bug")
	}
}
func (panicOnRefreshEnd) Shutdown(context.Context) error   { return nil }
func (panicOnRefreshEnd) ForceFlush(context.Context) error { return nil }

// A span processor that panics when a refresh span ends strands nobody: SetTokens during a refresh
// (which abandons it) releases the parked request with the new token, and refreshes afterwards
// (success, then the span's end) keep working.
func TestPanickingSpanProcessorStrandsNobody(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(panicOnRefreshEnd{}))
	e := newEngine(t, srv, srv.Login("ada"), engine.WithTracerProvider(tp))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	release := srv.HoldTokenCalls()
	srv.ExpireAccessTokens()
	parked := make(chan error, 1)
	go func() {
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		parked <- err
	}()
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls > 0 }, 3*time.Second, 5*time.Millisecond, "the refresh started")
	require.NoError(t, e.SetTokens(ctx, srv.Login("bob")))
	assert.NoError(t, <-parked, "released with the new tokens")
	release()

	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	srv.ExpireAccessTokens()
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err, "a refresh whose span end panics still installs its tokens")
}

// panicOnStart is a span processor that panics when a span of one name starts, or ends.
type panicOnStart struct {
	name  string
	atEnd bool
}

func (p panicOnStart) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	if !p.atEnd && s.Name() == p.name {
		panic("processor bug")
	}
}

func (p panicOnStart) OnEnd(s sdktrace.ReadOnlySpan) {
	if p.atEnd && s.Name() == p.name {
		panic("processor bug")
	}
}

func (panicOnStart) Shutdown(context.Context) error   { return nil }
func (panicOnStart) ForceFlush(context.Context) error { return nil }

// A sampler or span processor of the application's that panics on the logical request's span,
// when it starts or when it ends, never crashes the caller or fails the request: the request is
// answered (untraced, if the start failed) and the panic goes to the engine's log, once however many
// requests meet it at once.
func TestPanickingTelemetryOnTheLogicalSpan(t *testing.T) {
	cases := []struct {
		name string
		tp   func() *sdktrace.TracerProvider
	}{
		{"sampler", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(panicOn{"resilient GET"}))
		}},
		{"processor at start", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(panicOnStart{name: "resilient GET"}))
		}},
		{"processor at end", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(panicOnStart{name: "resilient GET", atEnd: true}))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
			tp := tc.tp()
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			logged := &lockedBuffer{}
			e := newEngine(t, srv, srv.Login("ada"), engine.WithTracerProvider(tp),
				engine.WithLogger(slog.New(slog.NewTextHandler(logged, nil))))
			var failed atomic.Int64
			fanOut(200, func(i int) { // at once: the once-a-minute log is decided by many requests together
				if v, err := engine.GetJSON[item](context.Background(), e, fmt.Sprintf("/items/%d", i%20)); err != nil || v.ID == "" {
					failed.Add(1)
				}
			})
			require.Zero(t, failed.Load(), "every request is answered")
			closeEngine(t, e) // the supervisor has logged what it was given (Close again at cleanup is harmless)
			const line = "the application's telemetry panicked on a request's span; the request went on"
			assert.Equal(t, 1, strings.Count(logged.String(), line), "logged once, not once per request:\n%s", logged.String())
			assert.Regexp(t, `(processor|sampler) bug`, logged.String())
			assert.Contains(t, logged.String(), "engine_test.panicOn", "the stack shows where it panicked")
		})
	}
}

// A sampler that panics on a send's span is a panic below the logical request: that request fails
// with ErrRequestPanicked, whose text carries the panic's value, and nothing crashes.
func TestPanickingSamplerOnTheSendSpan(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(panicOn{"GET"}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e := newEngine(t, srv, srv.Login("ada"), engine.WithTracerProvider(tp))
	_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
	require.ErrorIs(t, err, engine.ErrRequestPanicked)
	assert.Contains(t, err.Error(), "sampler bug")
}
