package telemetry

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Refresh is the telemetry of one token refresh. Its zero value records nothing.
type Refresh struct {
	t         *T
	span      trace.Span
	proactive bool
}

// StartRefresh starts the span of a refresh of the token endpoint at host, as the root of its own
// trace (it serves every request it releases, not one), linked to the request that started it
// (trigger; invalid for a proactive refresh). The returned context carries the span: the refresh
// calls made under it are its children and carry its trace context.
func (t *T) StartRefresh(ctx context.Context, host string, proactive bool, trigger trace.SpanContext) (context.Context, Refresh) {
	if t == nil {
		return ctx, Refresh{}
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal)}
	if trigger.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: trigger, Attributes: []attribute.KeyValue{attribute.String("resilient.link", "triggered by")}}))
	}
	ctx, span := t.now().tracer.Start(ctx, "token refresh", opts...)
	if span.IsRecording() {
		span.SetAttributes(append(serverAttrs(host), AttrProactive.Bool(proactive))...)
	}
	return ctx, Refresh{t: t, span: span, proactive: proactive}
}

// SpanContext is the refresh span's, for the requests it releases to link to.
func (r *Refresh) SpanContext() trace.SpanContext {
	if r.t == nil {
		return trace.SpanContext{}
	}
	return r.span.SpanContext()
}

// End ends the refresh at `at` with its outcome (one of the Refresh* constants), the generation it
// installed (0 if none), the number of parked requests it released, and its error if it failed.
// Ending twice does nothing.
func (r *Refresh) End(ctx context.Context, outcome string, gen uint64, released int, err error, at time.Time) {
	if r.t == nil {
		return
	}
	t, span := r.t, r.span
	r.t = nil
	t.refreshes.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(AttrRefreshOutcome.String(outcome), AttrProactive.Bool(r.proactive))))
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{AttrRefreshOutcome.String(outcome), AttrReleased.Int(released)}
	if gen > 0 {
		attrs = append(attrs, AttrGeneration.Int64(int64(gen)))
	}
	if err != nil {
		attrs = append(attrs, semconv.ErrorTypeKey.String(ErrorType(err)))
		span.SetStatus(codes.Error, safeMessage(err))
	}
	span.SetAttributes(attrs...)
	span.End(trace.WithTimestamp(at))
}

// RefreshRetry records, on the refresh span in ctx, that the refresh call will be made again after
// delay.
func (t *T) RefreshRetry(ctx context.Context, host, reason string, delay time.Duration, fromServer bool, calls int) {
	if t == nil {
		return
	}
	if !t.now().metricsOff {
		t.countRetry(ctx, host, reason)
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("retry scheduled", trace.WithAttributes(append(retryAttrs(reason, delay, fromServer, calls), attrRefreshCalls.Int(calls))...))
	}
}

// resendKey carries the resend count of a refresh call to the transport that sends it.
type resendKey struct{}

// WithResend returns ctx telling Transport that its send is the n-th resend of its request.
func WithResend(ctx context.Context, n int) context.Context {
	if n == 0 {
		return ctx
	}
	return context.WithValue(ctx, resendKey{}, n)
}

// Transport wraps base so that every request it sends gets a CLIENT span, trace context and a
// duration measurement, as the engine's own sends do. The engine uses it for token refresh calls.
func (t *T) Transport(base http.RoundTripper) http.RoundTripper {
	if t == nil {
		return base
	}
	return &transport{t: t, base: base}
}

type transport struct {
	t    *T
	base http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resend, _ := req.Context().Value(resendKey{}).(int)
	a := tr.t.now()
	var s Send
	ctx := tr.t.startSend(a, req.Context(), trace.SpanFromContext(req.Context()).IsRecording(), req, resend, time.Now(), &s)
	r2 := req.WithContext(ctx)
	r2.Header = req.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	tr.t.propagator().Inject(ctx, propagation.HeaderCarrier(r2.Header))
	resp, err := tr.base.RoundTrip(r2)
	s.End(ctx, r2, resp, err, time.Now())
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}
