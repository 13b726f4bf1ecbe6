package telemetry

import (
	"context"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/httpx"
)

// Logical is the telemetry of one logical request, kept by the request path. Its zero value (nil
// *T) records nothing.
type Logical struct {
	t       *T
	a       *active // the providers when the request began: its sends use the same
	span    trace.Span
	start   time.Time
	parked  time.Duration
	backoff time.Duration
	gen     uint64
	refresh trace.SpanContext // the last refresh linked, so a request links each refresh once
	prop    propagation.TextMapPropagator
	inject  bool   // sends carry trace context: their headers must be the engine's own
	fault   *Fault // a panic of the application's telemetry code, recovered
}

// noSpan stands for the spans a tracer that makes none does not start: it records nothing and its
// End does nothing. (Not the span in the caller's context: that one is the caller's to end.)
var noSpan = trace.SpanFromContext(context.Background())

var (
	internalKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	clientKind   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// logicalNames are the logical spans' names for the standard methods, made once.
var logicalNames = func() map[string]string {
	m := map[string]string{}
	for _, meth := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"} {
		m[meth] = "resilient " + meth
	}
	return m
}()

// StartLogical starts the INTERNAL span of a logical request begun at start, as a child of the
// span in ctx, into l (filled in place: it is large, and this runs for every request), and returns
// the context its attempts start from.
func (t *T) StartLogical(ctx context.Context, req *http.Request, start time.Time, l *Logical) context.Context {
	if t == nil {
		*l = Logical{}
		return ctx
	}
	a := t.now()
	*l = Logical{t: t, a: a, start: start, span: noSpan}
	if !a.tracesOff {
		name, ok := logicalNames[req.Method]
		if !ok {
			name = "resilient " + sendName(req.Method)
		}
		ctx = l.startSpan(ctx, name)
	}
	if p, writes := t.injector(); writes && injects(ctx) {
		l.inject, l.prop = true, p
	}
	return ctx
}

// startSpan starts the logical span as a child of parent. The tracer runs the application's sampler
// and span processors: a panic in them is kept for the request path to report (see Fault), and the
// request goes on from parent, without a span of its own.
func (l *Logical) startSpan(parent context.Context, name string) (ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			l.fault, l.span, ctx = &Fault{Value: p, Stack: debug.Stack()}, noSpan, parent
		}
	}()
	ctx, l.span = l.a.tracer.Start(parent, name, internalKind...)
	return ctx
}

// Fault is a panic of the application's telemetry code (a sampler, a span processor, a meter)
// that a logical request's span or measurement recovered: its value, and the stack where it
// happened.
type Fault struct {
	Value any
	Stack []byte
}

// Fault returns, once, the panic this logical request's telemetry recovered, or nil. The logical
// span never fails its request: the request path only reports the panic. (One in a send's span is
// a panic below the logical request, which fails it with ErrRequestPanicked as any other does.)
func (l *Logical) Fault() *Fault {
	f := l.fault
	l.fault = nil
	return f
}

// injects reports whether a send from ctx would carry trace context: a valid span context or
// baggage. Without either no propagator writes anything.
func injects(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsValid() || baggage.FromContext(ctx).Len() > 0
}

// Injects reports whether the sends of this logical request carry trace context, so that their
// header maps must be the engine's own (never the caller's).
func (l *Logical) Injects() bool { return l.t != nil && l.inject }

// Clocked reports whether this request's measurements need clock readings of their own (metrics
// are recorded); spans read the clock themselves.
func (l *Logical) Clocked() bool { return l.t != nil && !l.a.metricsOff }

// Parked records that the request parked behind a refresh at parkedAt and was released at
// released: how (token, error, cancelled), the refresh it waited for (linked), and the token
// generation it got.
func (l *Logical) Parked(parkedAt, released time.Time, outcome string, refresh trace.SpanContext) {
	if l.t == nil {
		return
	}
	l.parked += released.Sub(parkedAt)
	if !l.span.IsRecording() {
		return
	}
	l.span.AddEvent("parked", trace.WithTimestamp(parkedAt))
	l.span.AddEvent("released", trace.WithTimestamp(released), trace.WithAttributes(
		AttrWaitOutcome.String(outcome), AttrParked.Float64(released.Sub(parkedAt).Seconds())))
	l.Link(refresh)
}

// Parking moves the parked-requests gauge by delta (+1 when a request parks, -1 when released).
func (t *T) Parking(ctx context.Context, delta int64) {
	if t != nil && !t.now().metricsOff {
		t.parked.Add(ctx, delta)
	}
}

// Link links the logical span to the refresh span sc (once per refresh).
func (l *Logical) Link(sc trace.SpanContext) {
	if l.t == nil || !sc.IsValid() || sc.Equal(l.refresh) || !l.span.IsRecording() {
		return
	}
	l.refresh = sc
	l.span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("resilient.link", "token refresh")}})
}

// Token remembers the token generation a send used.
func (l *Logical) Token(gen uint64) {
	if gen != 0 {
		l.gen = gen
	}
}

// RetryScheduled records a retry of host due after delay: fromServer when the delay is the
// server's Retry-After. resend is the resend count the next attempt will carry.
func (l *Logical) RetryScheduled(ctx context.Context, host, reason string, delay time.Duration, fromServer bool, resend int) {
	if l.t == nil {
		return
	}
	l.backoff += delay
	if !l.a.metricsOff {
		l.t.countRetry(ctx, host, reason)
	}
	if l.span.IsRecording() {
		l.span.AddEvent("retry scheduled", trace.WithAttributes(retryAttrs(reason, delay, fromServer, resend)...))
	}
}

func retryAttrs(reason string, delay time.Duration, fromServer bool, resend int) []attribute.KeyValue {
	source := "backoff"
	if fromServer {
		source = "retry-after"
	}
	return []attribute.KeyValue{AttrRetryReason.String(reason), AttrRetryDelay.Float64(delay.Seconds()),
		AttrRetrySource.String(source), attrResendCountKey.Int(resend)}
}

func (t *T) countRetry(ctx context.Context, host, reason string) {
	t.retries.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(append(serverAttrs(host), AttrRetryReason.String(reason))...)))
}

// BudgetExhausted records that the retry budget of host refused a retry that was due.
func (l *Logical) BudgetExhausted(ctx context.Context, host string) {
	if l.t == nil {
		return
	}
	if !l.a.metricsOff {
		l.t.exhausted.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(serverAttrs(host)...)))
	}
	if l.span.IsRecording() {
		l.span.AddEvent("retry budget exhausted")
		l.span.SetAttributes(attrExhausted.Bool(true))
	}
}

// CoolDown records that the request waited d for its host's cool-down before sending.
func (l *Logical) CoolDown(ctx context.Context, host string, d time.Duration) {
	if l.t == nil {
		return
	}
	l.backoff += d
	if !l.a.metricsOff {
		l.t.coolWaits.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(serverAttrs(host)...)))
	}
	if l.span.IsRecording() {
		l.span.AddEvent("cool-down wait", trace.WithAttributes(AttrCoolDown.Float64(d.Seconds())))
	}
}

// End ends the logical request at now with its outcome (a response, or err), the number of
// physical sends it made, and whether it carried an Idempotency-Key. With neither a span nor
// metrics it does nothing; else a panic of the application's telemetry code is recovered into Fault.
func (l *Logical) End(ctx context.Context, req *http.Request, resp *http.Response, err error, sends int, now time.Time) {
	if l.t == nil || (l.a.metricsOff && (l.a.tracesOff || l.span == noSpan)) {
		return
	}
	l.endRecovering(ctx, req, resp, err, sends, now)
}

// endRecovering is End's work, with a panic of the application's telemetry code kept in l.fault.
func (l *Logical) endRecovering(ctx context.Context, req *http.Request, resp *http.Response, err error, sends int, now time.Time) {
	defer func() {
		if p := recover(); p != nil {
			l.fault = &Fault{Value: p, Stack: debug.Stack()}
		}
	}()
	l.end(ctx, req, resp, err, sends, now)
}

func (l *Logical) end(ctx context.Context, req *http.Request, resp *http.Response, err error, sends int, now time.Time) {
	status := 0
	if err == nil && resp != nil {
		status = resp.StatusCode
	}
	var errType string
	switch {
	case err != nil:
		errType = ErrorType(err)
	case status >= 400:
		errType = strconv.Itoa(status)
	}
	if !l.a.metricsOff {
		k := attrKey{kind: kindLogical, method: req.Method, host: req.URL.Host, scheme: req.URL.Scheme, status: status, errType: errType}
		l.t.logicalDur.Record(ctx, now.Sub(l.start).Seconds(), l.t.set(k)...)
	}
	if !l.span.IsRecording() {
		l.span.End() // no options: they would allocate for a span that keeps nothing
		return
	}
	// Every attribute in one call, at the end: one copy into the span instead of several. The
	// URL and port are on its sends (each attribute costs the SDK a copy and a check); waits that
	// did not happen are left out.
	host, _ := httpx.SplitHostPort(req.URL.Host)
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, methodAttr(req.Method), semconv.ServerAddress(host), AttrAttempts.Int(sends),
		AttrIdempotencyKey.Bool(httpx.HasIdempotencyKey(req.Header)))
	if l.backoff > 0 {
		attrs = append(attrs, AttrBackoff.Float64(l.backoff.Seconds()))
	}
	if l.parked > 0 {
		attrs = append(attrs, AttrParked.Float64(l.parked.Seconds()))
	}
	if l.gen > 0 {
		attrs = append(attrs, AttrGeneration.Int64(int64(l.gen)))
	}
	if status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if errType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		msg := ""
		if err != nil {
			msg = safeMessage(err)
		}
		l.span.SetStatus(codes.Error, msg)
	}
	l.span.SetAttributes(attrs...)
	l.span.End()
}
