// Package telemetry is the engine's OpenTelemetry instrumentation: one INTERNAL span per logical
// request, one CLIENT span per physical send (named by the conventions, with the attributes and
// the http.client.request.duration measurement otelhttp gives the same send), one span per token
// refresh that the requests it released link to, events for parking and backoff, trace context on
// every send, and the metrics that go with them.
//
// It is built to cost almost nothing when nobody records: with the no-op providers, or the global
// ones before the application installs an SDK, no span is started, no measurement is taken and
// nothing is allocated; when recording, no attribute is built unless a span records, metric
// attribute sets are made once per distinct value and kept, and the clock readings the request
// path takes anyway are reused. A request the sampler drops costs its two measurements, one
// unrecorded span and its trace context on the wire: its sends start no span of their own.
//
// Files: telemetry.go (instruments), providers.go (which providers are in force, and which are
// off), logical.go, send.go, refresh.go (spans of each), attrsets.go (metric attribute sets),
// errors.go (error.type and status text), conventions.go (names and request-reading helpers).
//
// Nothing here ever records a token, a refresh token, an Idempotency-Key value or a query value.
package telemetry

import (
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
)

// Config names the providers; nil fields mean the global ones (otel.GetTracerProvider and so on),
// which are no-ops until the application installs an SDK, and follow it when it does.
type Config struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
}

// T is the instrumentation of one engine. Its methods are safe for concurrent use, and a nil *T
// records nothing.
type T struct {
	cfg Config                 // as given: nil fields follow the global providers
	cur atomic.Pointer[active] // what the providers are now, rebuilt when a global one changes

	sendDur    metric.Float64Histogram // http.client.request.duration, per physical send
	logicalDur metric.Float64Histogram
	retries    metric.Int64Counter
	refreshes  metric.Int64Counter
	parked     metric.Int64UpDownCounter
	exhausted  metric.Int64Counter
	coolWaits  metric.Int64Counter

	setsMu sync.RWMutex                      // guards sets
	sets   map[attrKey][]metric.RecordOption // attribute sets made once, at most maxSets
}

// maxSets bounds the remembered attribute sets; past it sets are made per measurement (correct,
// only slower), so a server that redirects to endless hosts cannot grow the engine's memory.
const maxSets = 4096

// durationBuckets are otelhttp's (and the conventions' advice) for request durations, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// New builds the instrumentation: a tracer, a propagator and every instrument, once.
func New(cfg Config) (*T, error) {
	mp := cfg.MeterProvider
	if mp == nil {
		// The global provider's instruments forward to an SDK installed later.
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	t := &T{cfg: cfg, sets: map[attrKey][]metric.RecordOption{}}
	send, err := httpconv.NewClientRequestDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.sendDur = send.Inst()
	errs := []error{err}
	t.logicalDur, err = m.Float64Histogram(MetricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of logical requests: parked, every attempt and every backoff."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	t.retries, err = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries scheduled, by reason."))
	errs = append(errs, err)
	t.refreshes, err = m.Int64Counter(MetricRefreshes, metric.WithUnit("{refresh}"),
		metric.WithDescription("Token refreshes, by outcome."))
	errs = append(errs, err)
	t.parked, err = m.Int64UpDownCounter(MetricParked, metric.WithUnit("{request}"),
		metric.WithDescription("Requests parked behind a token refresh right now."))
	errs = append(errs, err)
	t.exhausted, err = m.Int64Counter(MetricBudgetExhausted, metric.WithUnit("{request}"),
		metric.WithDescription("Logical requests whose due retry the retry budget refused."))
	errs = append(errs, err)
	t.coolWaits, err = m.Int64Counter(MetricCoolDownWaits, metric.WithUnit("{request}"),
		metric.WithDescription("Requests held while their host cooled down after a Retry-After."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}
