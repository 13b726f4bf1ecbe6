package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/redact"
)

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
// from 0) now, as a child of the span in ctx, into sp (filled in place). The returned context
// carries the span; it is ctx itself when there is no span of the send's own, so that nothing has
// to be rebound to it. With neither traces nor metrics, it does nothing, not even read the clock.
func (l *Logical) StartSend(ctx context.Context, req *http.Request, resend int, sp *Send) context.Context {
	if l.t == nil || (l.a.tracesOff && l.a.metricsOff) {
		*sp = Send{}
		return ctx
	}
	return l.t.startSend(l.a, ctx, l.span.IsRecording(), req, resend, time.Now(), sp)
}

// startSend starts the send's span unless its parent records nothing: the sampler dropped the
// logical request (or the refresh), and under the parent-based samplers OpenTelemetry recommends
// it drops the children too. Starting one anyway would cost an id, a span and a copy of the request
// for nothing; the send carries the parent's (unsampled) trace context instead.
func (t *T) startSend(a *active, ctx context.Context, parentRecords bool, req *http.Request, resend int, now time.Time, s *Send) context.Context {
	*s = Send{t: t, a: a, span: noSpan, start: now}
	if a.tracesOff || !parentRecords {
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
	m := methodAttr(req.Method)
	attrs = append(attrs, m)
	if m.Value.AsString() != req.Method { // _OTHER, or not in upper case
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
