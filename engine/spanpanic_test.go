package engine_test

import (
	"context"
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
