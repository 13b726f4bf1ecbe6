package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// With no provider configured and no SDK installed, the otel package's global stand-ins are in
// force and record nothing, so the engine does no work for them: no span is started (the caller's
// context comes back as it went in), no clock is read for a metric, and the stand-in propagator
// (which writes nothing) is not given the caller's trace context to write. Once an SDK is installed
// globally, the same T records at once. (Run before any other test of this package sets a global
// provider: none does.)
func TestGlobalStandInsAreOff(t *testing.T) {
	tel, err := New(Config{})
	require.NoError(t, err)
	parent := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true}))
	req := httptest.NewRequest(http.MethodGet, "http://a.test/x", nil)

	var l Logical
	ctx := tel.StartLogical(parent, req, time.Now(), &l)
	assert.True(t, ctx == parent, "no logical span is started for the stand-in tracer")
	assert.False(t, l.Clocked(), "no measurement is taken for the stand-in meter")
	var s Send
	assert.True(t, l.StartSend(ctx, req, 0, &s) == ctx, "no send span either")
	assert.False(t, l.Injects(), "the stand-in propagator writes nothing")
	s.End(ctx, req, nil, context.Canceled, time.Now())
	l.End(ctx, req, nil, context.Canceled, 1, time.Now())

	// A propagator set globally after New is used at once: the caller's trace context is passed on.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	ctx = tel.StartLogical(parent, req, time.Now(), &l)
	require.True(t, l.Injects(), "the caller's trace context is passed on")
	h := http.Header{}
	l.Inject(ctx, h)
	assert.Equal(t, "00-01000000000000000000000000000000-0100000000000000-01", h.Get("Traceparent"))
	l.End(ctx, req, nil, context.Canceled, 1, time.Now())

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		_ = tp.Shutdown(context.Background())
	})
	ctx = tel.StartLogical(parent, req, time.Now(), &l)
	require.False(t, ctx == parent, "the SDK installed after New records at once")
	l.End(ctx, req, &http.Response{StatusCode: http.StatusOK}, nil, 1, time.Now())
	assert.Len(t, spans.Ended(), 1)
}
