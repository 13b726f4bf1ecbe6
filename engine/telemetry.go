package engine

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/telemetry"
)

// The engine's OpenTelemetry instrumentation, named here so applications can build dashboards and
// queries on it. Every send is a CLIENT span with the attributes otelhttp gives the same send, and
// the same http.client.request.duration measurement; it is named by the conventions ("GET", where
// otelhttp's default is "HTTP GET") and ends when the answer's headers arrive (otelhttp's ends with
// the body). Everything else is the engine's own:
//
//   - a span per logical request, INTERNAL, named "resilient <METHOD>", parent of its sends, with
//     http.request.method, server.address, http.response.status_code and the attributes
//     AttrAttempts, AttrTokenGeneration, AttrIdempotencyKeyPresent, AttrBackoff and AttrParked
//     (these two only when the request waited), error.type and an error status when it fails, and
//     the events
//     "parked", "released", "retry scheduled", "cool-down wait" and "retry budget exhausted";
//   - a span per token refresh, "token refresh", the root of its own trace (it serves every request
//     it releases), linked to the request that started it; every request it released links to it;
//   - the metrics MetricRequestDuration, MetricRetries, MetricRefreshes, MetricParked,
//     MetricBudgetExhausted and MetricCoolDownWaits.
//
// A request the sampler does not record gets no send spans either (under a parent-based sampler
// they would not be recorded): its sends carry its unsampled trace context, and its metrics are
// recorded as any other's. No token, refresh token, Idempotency-Key value or URL query value is
// ever recorded.
const (
	AttrAttempts              = string(telemetry.AttrAttempts)
	AttrBackoff               = string(telemetry.AttrBackoff)
	AttrParked                = string(telemetry.AttrParked)
	AttrTokenGeneration       = string(telemetry.AttrGeneration)
	AttrIdempotencyKeyPresent = string(telemetry.AttrIdempotencyKey)
	AttrRetryReason           = string(telemetry.AttrRetryReason)
	AttrRetryDelay            = string(telemetry.AttrRetryDelay)
	AttrRefreshOutcome        = string(telemetry.AttrRefreshOutcome)

	MetricRequestDuration = telemetry.MetricRequestDuration
	MetricRetries         = telemetry.MetricRetries
	MetricRefreshes       = telemetry.MetricRefreshes
	MetricParked          = telemetry.MetricParked
	MetricBudgetExhausted = telemetry.MetricBudgetExhausted
	MetricCoolDownWaits   = telemetry.MetricCoolDownWaits
)

// WithTracerProvider sets where the engine's spans go. Default: the global provider
// (otel.GetTracerProvider), which records nothing until the application installs an SDK, and
// follows it from then on, even when the SDK is installed after New.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tel.TracerProvider = tp }
}

// WithMeterProvider sets where the engine's metrics go. Default: the global provider
// (otel.GetMeterProvider), which follows an SDK installed later, as WithTracerProvider does.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.tel.MeterProvider = mp }
}

// WithPropagator sets how trace context is written into every send, token refresh calls included.
// Default: the global propagator (otel.GetTextMapPropagator), which writes nothing until the
// application sets one; set propagation.TraceContext{} for W3C traceparent and tracestate.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.tel.Propagator = p }
}

// traceHandler adds the trace and span ids of the record's context to every record, so that a log
// line leads to its trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(a)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
