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
// path takes anyway are reused.
//
// Nothing here ever records a token, a refresh token, an Idempotency-Key value or a query value.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/messages"
)

// ScopeName is the instrumentation scope of the engine's tracer and meter.
const ScopeName = "github.com/resilientclient/resilient"

// Attribute keys for what the conventions have no name for. Durations are in seconds, as the
// conventions use for every duration.
const (
	AttrAttempts       = attribute.Key("resilient.request.attempts")              // physical sends of a logical request
	AttrBackoff        = attribute.Key("resilient.request.backoff")               // seconds spent waiting between attempts
	AttrParked         = attribute.Key("resilient.request.parked")                // seconds spent parked behind a refresh
	AttrGeneration     = attribute.Key("resilient.token.generation")              // token generation sent (or installed by a refresh)
	AttrIdempotencyKey = attribute.Key("resilient.idempotency_key.present")       // whether the request carried one (never its value)
	AttrRetryReason    = attribute.Key("resilient.retry.reason")                  // why a retry was scheduled
	AttrRetryDelay     = attribute.Key("resilient.retry.delay")                   // seconds before the retry
	AttrRetrySource    = attribute.Key("resilient.retry.source")                  // "retry-after" (the server's) or "backoff" (computed)
	AttrRefreshOutcome = attribute.Key("resilient.refresh.outcome")               // success, failed, expired, abandoned
	AttrProactive      = attribute.Key("resilient.refresh.proactive")             // started by the timer before expiry
	AttrReleased       = attribute.Key("resilient.refresh.released")              // parked requests answered when it ended
	AttrCoolDown       = attribute.Key("resilient.cooldown.wait")                 // seconds a request waited for its host's cool-down
	AttrWaitOutcome    = attribute.Key("resilient.park.outcome")                  // how a park ended: token, error, cancelled
	attrRefreshCalls   = attribute.Key("resilient.refresh.calls")                 // calls made to the refresh function
	attrExhausted      = attribute.Key("resilient.retry_budget.exhausted")        // set on a logical span the budget stopped
	attrResendCountKey = attribute.Key(string(semconv.HTTPRequestResendCountKey)) // the conventions' own key
)

// Refresh outcomes, the values of AttrRefreshOutcome.
const (
	RefreshSuccess   = "success"   // new tokens installed
	RefreshFailed    = "failed"    // passing failure: credentials kept, parked requests failed
	RefreshExpired   = "expired"   // definitive failure: the session ended
	RefreshAbandoned = "abandoned" // replaced by SetTokens, or the engine closed
)

// Metric names of the engine's own instruments (http.client.request.duration is the conventions').
const (
	MetricRequestDuration = "resilient.client.request.duration"
	MetricRetries         = "resilient.client.retries"
	MetricRefreshes       = "resilient.client.token.refreshes"
	MetricParked          = "resilient.client.requests.parked"
	MetricBudgetExhausted = "resilient.client.retry_budget.exhausted"
	MetricCoolDownWaits   = "resilient.client.cooldown.waits"
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
	cfg         Config                      // as given: nil fields follow the global providers
	cur         atomic.Pointer[active]      // what the providers are now, rebuilt when a global one changes
	propVerdict atomic.Pointer[typeVerdict] // whether the global propagator's type is the stand-in

	sendDur    metric.Float64Histogram // http.client.request.duration, per physical send
	logicalDur metric.Float64Histogram
	retries    metric.Int64Counter
	refreshes  metric.Int64Counter
	parked     metric.Int64UpDownCounter
	exhausted  metric.Int64Counter
	coolWaits  metric.Int64Counter

	sets  sync.Map     // attrKey → []metric.RecordOption: attribute sets made once
	nSets atomic.Int32 // entries in sets, bounded by maxSets
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
	t := &T{cfg: cfg}
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

// active is what the tracer and meter providers are at one moment, and whether either can be
// skipped: a tracer that makes no spans, a meter that keeps nothing. A request reads it once (two
// atomic loads when following the global providers) and does no work for what is off.
type active struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	same bool // both can be compared with ==, so they can be recognised again

	tracer trace.Tracer
	// tracesOff: the tracer makes no spans of its own (the no-op provider, or the global one before
	// an SDK is installed). Its spans would only pass the parent's span context through, which
	// leaving the context as it is does too; so no span is started at all.
	tracesOff bool
	// metricsOff: the meter provider is the no-op one, or the global one before an SDK is installed.
	metricsOff bool
}

// now returns the providers in force: the configured ones, and for the others the global ones as
// they are now, so that an SDK installed after New takes over at once. Nothing is started or
// recorded to find out (a provider that cannot be compared is looked at again on every call).
func (t *T) now() *active {
	tp, mp := t.cfg.TracerProvider, t.cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if a := t.cur.Load(); a != nil && a.same && a.tp == tp && a.mp == mp {
		return a
	}
	a := &active{tp: tp, mp: mp, tracer: tp.Tracer(ScopeName)}
	a.same = reflect.TypeOf(tp).Comparable() && reflect.TypeOf(mp).Comparable()
	a.tracesOff = noTracer(tp, t.cfg.TracerProvider == nil)
	a.metricsOff = noMeter(mp, t.cfg.MeterProvider == nil)
	t.cur.Store(a)
	return a
}

// propagator returns the propagator in force and whether it can write anything: the configured one
// always can; the global one cannot while the application has set none (once it has,
// otel.GetTextMapPropagator returns that one instead of the global stand-in).
func (t *T) propagator() (propagation.TextMapPropagator, bool) {
	if t.cfg.Propagator != nil {
		return t.cfg.Propagator, true
	}
	p := otel.GetTextMapPropagator()
	typ := reflect.TypeOf(p)
	if v := t.propVerdict.Load(); v != nil && v.t == typ {
		return p, !v.standIn
	}
	v := &typeVerdict{t: typ, standIn: isGlobalStandIn(p, "*global.textMapPropagator")}
	t.propVerdict.Store(v)
	return p, !v.standIn
}

// typeVerdict remembers whether values of one type are the global stand-in (a type's name is only
// read when the type changes).
type typeVerdict struct {
	t       reflect.Type
	standIn bool
}

// isGlobalStandIn reports whether v is the otel package's global stand-in of the given type, which
// the getters return until the application installs its own. (Were the type ever renamed, the
// engine would only do the work always.)
func isGlobalStandIn(v any, typeName string) bool {
	return reflect.TypeOf(v).String() == typeName
}

// noTracer reports whether tp makes no spans: the no-op provider, or, when following the global
// provider, the global stand-in while no SDK is installed. A provider given in Config is never taken
// for the stand-in: an SDK may come behind it later without changing its identity.
func noTracer(tp trace.TracerProvider, global bool) bool {
	if _, ok := tp.(tracenoop.TracerProvider); ok {
		return true
	}
	return global && isGlobalStandIn(tp, "*global.tracerProvider")
}

// noMeter reports whether mp keeps nothing: the no-op provider, or, when following the global
// provider, the global one while no SDK is installed (once one is, otel.GetMeterProvider returns the
// SDK itself and this is asked again; were the global type ever renamed, metrics would only be
// recorded always). A provider given in Config is never taken for the global one: it may get an SDK
// behind it later without changing identity.
func noMeter(mp metric.MeterProvider, global bool) bool {
	if _, ok := mp.(metricnoop.MeterProvider); ok {
		return true
	}
	return global && isGlobalStandIn(mp, "*global.meterProvider")
}

// ---- logical requests ----

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
	inject  bool // sends carry trace context: their headers must be the engine's own
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
	*l = Logical{t: t, a: a, start: start}
	prop, on := t.propagator()
	if on {
		l.prop = prop
	}
	if a.tracesOff {
		l.span = noSpan
		l.inject = on && injects(ctx)
		return ctx
	}
	name, ok := logicalNames[req.Method]
	if !ok {
		name = "resilient " + sendName(req.Method)
	}
	ctx, l.span = a.tracer.Start(ctx, name, internalKind...)
	l.inject = on && injects(ctx)
	return ctx
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
// physical sends it made, and whether it carried an Idempotency-Key.
func (l *Logical) End(ctx context.Context, req *http.Request, resp *http.Response, err error, sends int, now time.Time) {
	if l.t == nil {
		return
	}
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
	host, _ := splitHostPort(req.URL.Host)
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, methodAttr(req.Method), semconv.ServerAddress(host), AttrAttempts.Int(sends),
		AttrIdempotencyKey.Bool(hasIdempotencyKey(req)))
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

func hasIdempotencyKey(req *http.Request) bool {
	return req.Header.Get("Idempotency-Key") != ""
}

// ErrorType is the error.type of a failed logical request: a short fixed name for the engine's
// own errors, else the conventions' (an ErrorType method, or the error's type name).
func ErrorType(err error) string {
	var rl *messages.RetryLaterError
	switch {
	case errors.Is(err, messages.ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, messages.ErrRefreshFailed):
		return "refresh_failed"
	case errors.Is(err, messages.ErrClosed):
		return "engine_closed"
	case errors.Is(err, messages.ErrRequestPanicked):
		return "request_panicked"
	case errors.As(err, &rl):
		return "retry_later"
	case errors.Is(err, messages.ErrRetryBudgetExhausted):
		return "retry_budget_exhausted"
	case errors.Is(err, messages.ErrAttemptTimeout):
		return "attempt_timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return typeName(unwrapNetwork(err))
}

// unwrapNetwork is the transport's own error inside the engine's network wrapper, so error.type
// names what otelhttp would name for the same failure (*net.OpError, *url.Error, ...).
func unwrapNetwork(err error) error {
	if errors.Is(err, messages.ErrNetwork) {
		if u := errors.Unwrap(err); u != nil {
			return u
		}
	}
	return err
}

// ---- physical sends ----

// Send is the telemetry of one physical send. Its zero value records nothing.
type Send struct {
	t      *T
	a      *active
	span   trace.Span
	start  time.Time
	rebind bool // the send's context holds a span of its own
	resend int
}

// StartSend starts the CLIENT span of a send of req (the resend-th of the logical request, counting
// from 0) at now, as a child of the span in ctx, into sp (filled in place). The returned context
// carries the span; it is ctx itself when the span neither records nor differs from its parent, so
// that nothing has to be rebound to it. With neither traces nor metrics, it does nothing.
func (l *Logical) StartSend(ctx context.Context, req *http.Request, resend int, now time.Time, sp *Send) context.Context {
	if l.t == nil || (l.a.tracesOff && l.a.metricsOff) {
		*sp = Send{}
		return ctx
	}
	return l.t.startSend(l.a, ctx, req, resend, now, sp)
}

func (t *T) startSend(a *active, ctx context.Context, req *http.Request, resend int, now time.Time, s *Send) context.Context {
	*s = Send{t: t, a: a, span: noSpan, start: now}
	if a.tracesOff {
		return ctx
	}
	sctx, span := a.tracer.Start(ctx, sendName(req.Method), clientKind...)
	s.span = span
	if !span.IsRecording() {
		if span.SpanContext().Equal(trace.SpanContextFromContext(ctx)) {
			return ctx // the parent's span context passed through: nothing to rebind
		}
		s.rebind = true
		return sctx
	}
	s.rebind, s.resend = true, resend
	return sctx
}

// Rebind reports whether the send's context differs from its parent's, so the request must be
// rebound to it for the transport below to see the send's span.
func (s *Send) Rebind() bool { return s.rebind }

// sendAttrs are otelhttp's request and response attributes (RequestTraceAttrs and
// ResponseTraceAttrs) of a send that was answered status (0: not answered) over proto, with
// url.full redacted and the conventions' http.request.resend_count on resends.
func sendAttrs(req *http.Request, resend, status int, proto string) []attribute.KeyValue {
	host, port := hostPort(req.URL)
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, methodAttr(req.Method))
	if m := methodAttr(req.Method); m.Value.AsString() == "_OTHER" || m.Value.AsString() != req.Method {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(req.Method))
	}
	attrs = append(attrs, semconv.URLFull(redact.URL(req.URL)), semconv.ServerAddress(host))
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if name, version := netProtocol(proto); version != "" {
		if name != "http" {
			attrs = append(attrs, semconv.NetworkProtocolName(name))
		}
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	if resend > 0 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(resend))
	}
	if status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	if status >= 400 || (status > 0 && status < 100) {
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
	return attrs
}

// Inject writes the trace context of ctx into h (which must be the engine's own map), if Injects.
func (l *Logical) Inject(ctx context.Context, h http.Header) {
	if l.t != nil && l.inject {
		l.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// End ends the send at now with what came back: resp, or err (the transport's own error). It
// records http.client.request.duration with otelhttp's attributes.
func (s *Send) End(ctx context.Context, req *http.Request, resp *http.Response, err error, now time.Time) {
	if s.t == nil {
		return
	}
	status, proto := 0, req.Proto
	if err == nil && resp != nil {
		status = resp.StatusCode
		if resp.Proto != "" {
			proto = resp.Proto
		}
	}
	if !s.a.metricsOff {
		k := attrKey{kind: kindSend, method: req.Method, host: req.URL.Host, scheme: req.URL.Scheme, proto: proto, status: status}
		if status == 0 && err != nil {
			k.errType = typeName(err) // as otelhttp: its own form on the metric ("net.OpError")
		}
		s.t.sendDur.Record(ctx, now.Sub(s.start).Seconds(), s.t.set(k)...)
	}
	if !s.span.IsRecording() {
		s.span.End()
		return
	}
	// Every attribute in one call, at the end: one copy into the span instead of two.
	attrs := sendAttrs(req, s.resend, status, proto)
	switch {
	case err != nil:
		attrs = append(attrs, semconv.ErrorType(err)) // as otelhttp: the conventions' form on spans ("*net.OpError")
		s.span.SetStatus(codes.Error, safeMessage(err))
	case status >= 400 || status < 100:
		s.span.SetStatus(codes.Error, "")
	}
	s.span.SetAttributes(attrs...)
	s.span.End()
}

// ---- refreshes ----

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
	ctx := tr.t.startSend(a, req.Context(), req, resend, time.Now(), &s)
	r2 := req.WithContext(ctx)
	r2.Header = req.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	if prop, on := tr.t.propagator(); on {
		prop.Inject(ctx, propagation.HeaderCarrier(r2.Header))
	}
	resp, err := tr.base.RoundTrip(r2)
	s.End(ctx, r2, resp, err, time.Now())
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

// ---- metric attribute sets ----

type setKind uint8

const (
	kindSend setKind = iota
	kindLogical
)

// attrKey is everything a measurement's attribute set is made of.
type attrKey struct {
	kind    setKind
	method  string
	scheme  string
	host    string // host[:port] as in the URL
	proto   string
	status  int
	errType string
}

// set returns the record options for k (its attribute set), made once per distinct k (up to
// maxSets). They are kept as a slice so that recording passes them without allocating one.
func (t *T) set(k attrKey) []metric.RecordOption {
	if o, ok := t.sets.Load(k); ok {
		return o.([]metric.RecordOption)
	}
	o := []metric.RecordOption{metric.WithAttributeSet(k.attributes())}
	if t.nSets.Load() < maxSets {
		if _, loaded := t.sets.LoadOrStore(k, o); !loaded {
			t.nSets.Add(1)
		}
	}
	return o
}

// attributes builds k's set: for a send, otelhttp's metric attributes (method, server address and
// port, scheme, protocol, status, and error.type only when no answer came back); for a logical
// request, method, server address, status and error.type.
func (k attrKey) attributes() attribute.Set {
	host, port := splitHostPort(k.host)
	if port == defaultPort(k.scheme) {
		port = -1
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(methodAttr(k.method).Value.AsString()), semconv.ServerAddress(host))
	if k.kind == kindSend {
		attrs = append(attrs, semconv.URLScheme(k.scheme))
	}
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if k.kind == kindSend {
		if name, version := netProtocol(k.proto); name != "" {
			attrs = append(attrs, semconv.NetworkProtocolName(name))
			if version != "" {
				attrs = append(attrs, semconv.NetworkProtocolVersion(version))
			}
		}
	}
	if k.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(k.status))
	}
	if k.errType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(k.errType))
	}
	return attribute.NewSet(attrs...)
}

// ---- small helpers, as otelhttp reads requests ----

// sendName is a CLIENT span's name as the conventions give it when no route template is known: the
// method, or "HTTP" for a method they do not know. (otelhttp's default is "HTTP GET".)
func sendName(method string) string {
	m := methodAttr(method).Value.AsString()
	if m == "_OTHER" {
		return "HTTP"
	}
	return m
}

// typeName is error.type for an error that has no name of its own, computed as otelhttp does it so
// that both put the same failure in the same series: an ErrorType method's answer, else the error's
// type as package path and name ("net.OpError" for a *net.OpError).
func typeName(err error) string {
	if et, ok := err.(interface{ ErrorType() string }); ok {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	t := reflect.TypeOf(err)
	if t == nil {
		return "_OTHER"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() == "" || t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// safeMessage is err's text for a span status, with the query values of any URL in it redacted
// (net/http's *url.Error prints the whole URL).
func safeMessage(err error) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && (u.RawQuery != "" || u.User != nil) {
			msg = strings.ReplaceAll(msg, ue.URL, redact.URL(u))
		}
	}
	return msg
}

// serverAttrs are server.address, and server.port when the host names one, for a host as the
// request path keys it ("host[:port]"); none for an unknown host.
func serverAttrs(hostport string) []attribute.KeyValue {
	if hostport == "" {
		return nil
	}
	host, port := splitHostPort(hostport)
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, semconv.ServerAddress(host))
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	return attrs
}

var methods = map[string]attribute.KeyValue{
	http.MethodConnect: semconv.HTTPRequestMethodConnect,
	http.MethodDelete:  semconv.HTTPRequestMethodDelete,
	http.MethodGet:     semconv.HTTPRequestMethodGet,
	http.MethodHead:    semconv.HTTPRequestMethodHead,
	http.MethodOptions: semconv.HTTPRequestMethodOptions,
	http.MethodPatch:   semconv.HTTPRequestMethodPatch,
	http.MethodPost:    semconv.HTTPRequestMethodPost,
	http.MethodPut:     semconv.HTTPRequestMethodPut,
	http.MethodTrace:   semconv.HTTPRequestMethodTrace,
}

// methodAttr is http.request.method: the method if the conventions know it (in any case), else _OTHER.
func methodAttr(m string) attribute.KeyValue {
	if a, ok := methods[m]; ok {
		return a
	}
	if a, ok := methods[strings.ToUpper(m)]; ok {
		return a
	}
	return semconv.HTTPRequestMethodOther
}

// hostPort is the server address and the port when it is not the scheme's default (-1 then).
func hostPort(u *url.URL) (string, int) {
	host, port := splitHostPort(u.Host)
	if port == defaultPort(u.Scheme) {
		port = -1
	}
	return host, port
}

func defaultPort(scheme string) int {
	switch strings.ToLower(scheme) {
	case "https":
		return 443
	case "http":
		return 80
	}
	return -2
}

// splitHostPort splits host[:port] ([v6]:port too); port is -1 when absent or unreadable.
func splitHostPort(hostport string) (string, int) {
	host, portStr := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		host, portStr = hostport[:i], hostport[i+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if portStr == "" {
		return host, -1
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(p)
}

// netProtocol splits "HTTP/1.1" into the conventions' network.protocol.name and version.
func netProtocol(proto string) (name, version string) {
	name, version, _ = strings.Cut(proto, "/")
	return strings.ToLower(name), version
}
