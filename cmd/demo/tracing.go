package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// telemetry is the demo's OpenTelemetry SDK: every span is kept in memory for act 5's tree, and,
// with -otlp-endpoint, every span and metric of every act also goes to that collector over OTLP/HTTP.
// It is installed as the global provider, so the engines of every act (built without telemetry
// options) report to it, as an application's would.
type telemetry struct {
	spans    *tracetest.SpanRecorder
	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
	endpoint string
}

func startTelemetry(endpoint string) (*telemetry, error) {
	t := &telemetry{spans: tracetest.NewSpanRecorder(), endpoint: endpoint}
	res := resource.NewSchemaless(semconv.ServiceName("resilient-demo"))
	topts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(t.spans), sdktrace.WithResource(res)}
	var mopts []sdkmetric.Option
	if endpoint != "" {
		ctx := context.Background()
		te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure())
		if err != nil {
			return nil, err
		}
		me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(endpoint), otlpmetrichttp.WithInsecure())
		if err != nil {
			return nil, err
		}
		topts = append(topts, sdktrace.WithBatcher(te))
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(5*time.Second))), sdkmetric.WithResource(res))
	}
	t.tp = sdktrace.NewTracerProvider(topts...)
	t.mp = sdkmetric.NewMeterProvider(mopts...)
	otel.SetTracerProvider(t.tp)
	otel.SetMeterProvider(t.mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return t, nil
}

// stop flushes what is still buffered to the collector, for at most ten seconds.
func (t *telemetry) stop(w io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := t.tp.Shutdown(ctx)
	if merr := t.mp.Shutdown(ctx); err == nil {
		err = merr
	}
	if t.endpoint != "" {
		if err != nil {
			fmt.Fprintf(w, "telemetry: sending to %s failed: %v\n", t.endpoint, err)
		} else {
			fmt.Fprintf(w, "telemetry: spans and metrics sent to %s (service.name resilient-demo)\n", t.endpoint)
		}
	}
}

// traceAct: one request whose token turns out expired while it is being made, whose first send
// meets a 503, and which succeeds on its retry; its trace is printed as a tree.
func traceAct(spans *tracetest.SpanRecorder) func(*reporter, int) {
	return func(r *reporter, _ int) {
		r.begin(5, "one request, traced: parked behind a refresh, then a 503, then retried")
		var mu sync.Mutex
		var traceparents []string
		srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour, Observe: func(req *http.Request) {
			mu.Lock()
			traceparents = append(traceparents, req.Header.Get("Traceparent"))
			mu.Unlock()
		}})
		defer srv.Close()
		tokens := srv.Login("ada")
		tokens.Expiry = time.Now().Add(-time.Second) // known expired: the request parks before sending
		e, _ := mustEngine(srv, tokens)
		defer closeEngine(e)

		srv.SetTokenDelay(120 * time.Millisecond)
		srv.SetAPIFailure(http.StatusServiceUnavailable, "", 1)
		ctx, root := otel.Tracer("demo").Start(context.Background(), "checkout")
		t0 := time.Now()
		_, err := engine.GetJSON[map[string]any](ctx, e, "/items/1")
		took := time.Since(t0)
		root.End()
		if !r.check("the request succeeded", err == nil, "%v", err) {
			return
		}

		tree := newSpanTree(spans.Ended())
		logical := tree.find(root.SpanContext().TraceID(), "resilient GET")
		refresh := tree.linkedFrom(logical)
		tree.print(r.w, root.SpanContext().TraceID(), "  ")
		if refresh != nil {
			fmt.Fprintln(r.w, "  linked:")
			tree.print(r.w, refresh.SpanContext().TraceID(), "  ")
		}
		sends := tree.children(logical)
		mu.Lock()
		sent := slices.Clone(traceparents)
		mu.Unlock()
		r.millis("took", took)
		r.figure("sends", float64(len(sends)))
		r.figure("traceparents", float64(len(sent)-count(sent, "")))
		r.explain("The request took %v: it waited (parked) for the refresh its expired token needed, which the "+
			"token endpoint answers in 120 ms here, then met one 503, backed off and succeeded; the refresh "+
			"is a trace of its own, linked from the request, because one refresh serves every request parked behind it.",
			round(took))
		r.check("the request's span has two sends: 503, then 200", len(sends) == 2 &&
			status(sends[0]) == 503 && status(sends[1]) == 200, "%d sends", len(sends))
		r.check("it was parked and links to the refresh", logical != nil && hasEvent(logical, "parked") && refresh != nil,
			"parked: %v, refresh found: %v", logical != nil && hasEvent(logical, "parked"), refresh != nil)
		r.check("every send and the refresh call carried a traceparent", len(sent) == 3 && !slices.Contains(sent, ""),
			"%d of 3", len(sent)-count(sent, ""))
	}
}

// spanTree indexes finished spans by trace and parent.
type spanTree struct {
	spans []sdktrace.ReadOnlySpan
}

func newSpanTree(spans []sdktrace.ReadOnlySpan) *spanTree {
	s := slices.Clone(spans)
	slices.SortFunc(s, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return &spanTree{spans: s}
}

func (t *spanTree) find(id trace.TraceID, name string) sdktrace.ReadOnlySpan {
	for _, s := range t.spans {
		if s.SpanContext().TraceID() == id && s.Name() == name {
			return s
		}
	}
	return nil
}

func (t *spanTree) children(p sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	if p == nil {
		return nil
	}
	for _, s := range t.spans {
		if s.Parent().SpanID() == p.SpanContext().SpanID() && s.Parent().TraceID() == p.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// linkedFrom is the span the first link of s points to, if it finished.
func (t *spanTree) linkedFrom(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	if s == nil {
		return nil
	}
	for _, l := range s.Links() {
		for _, c := range t.spans {
			if c.SpanContext().Equal(l.SpanContext) {
				return c
			}
		}
	}
	return nil
}

// print writes the spans of trace id as a tree: name, duration, the attributes worth reading, and
// events with their offset from the span's start.
func (t *spanTree) print(w io.Writer, id trace.TraceID, indent string) {
	for _, s := range t.spans {
		if s.SpanContext().TraceID() == id && !s.Parent().IsValid() {
			fmt.Fprintf(w, "%strace %s\n", indent, id.String()[:12])
			t.printSpan(w, s, indent+"  ", "")
		}
	}
}

// printSpan writes s after lead and its own branch mark, then its events, links and child spans,
// in the order they happened, one level deeper.
func (t *spanTree) printSpan(w io.Writer, s sdktrace.ReadOnlySpan, lead, mark string) {
	fmt.Fprintf(w, "%s%s%s  %s%s\n", lead, mark, s.Name(), ms(s.EndTime().Sub(s.StartTime())), describe(s))
	switch mark {
	case "├─ ":
		lead += "│  "
	case "└─ ":
		lead += "   "
	}
	type item struct {
		at   time.Time
		text string
		kid  sdktrace.ReadOnlySpan
	}
	var items []item
	for _, ev := range s.Events() {
		items = append(items, item{at: ev.Time, text: fmt.Sprintf("· %s at +%s%s", ev.Name, ms(ev.Time.Sub(s.StartTime())), attrs(ev.Attributes))})
	}
	for _, l := range s.Links() {
		items = append(items, item{at: s.StartTime(), text: "→ linked to trace " + l.SpanContext.TraceID().String()[:12]})
	}
	for _, k := range t.children(s) {
		items = append(items, item{at: k.StartTime(), kid: k})
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.at.Compare(b.at) })
	for i, it := range items {
		b := branch(i == len(items)-1)
		if it.kid != nil {
			t.printSpan(w, it.kid, lead, b)
		} else {
			fmt.Fprintf(w, "%s%s%s\n", lead, b, it.text)
		}
	}
}

func branch(last bool) string {
	if last {
		return "└─ "
	}
	return "├─ "
}

// describe picks the attributes a reader of the tree wants.
func describe(s sdktrace.ReadOnlySpan) string {
	var parts []string
	for _, kv := range s.Attributes() {
		switch string(kv.Key) {
		case "http.response.status_code", "http.request.resend_count", engine.AttrAttempts, engine.AttrTokenGeneration,
			engine.AttrRefreshOutcome, "resilient.refresh.released", "error.type":
			parts = append(parts, fmt.Sprintf("%s=%s", short(string(kv.Key)), kv.Value.Emit()))
		case engine.AttrParked, engine.AttrBackoff:
			parts = append(parts, fmt.Sprintf("%s=%s", short(string(kv.Key)), ms(time.Duration(kv.Value.AsFloat64()*float64(time.Second)))))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, " ")
}

func attrs(kvs []attribute.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		v := kv.Value.Emit()
		if kv.Value.Type() == attribute.FLOAT64 {
			v = ms(time.Duration(kv.Value.AsFloat64() * float64(time.Second)))
		}
		parts = append(parts, short(string(kv.Key))+"="+v)
	}
	if len(parts) == 0 {
		return ""
	}
	return "  " + strings.Join(parts, " ")
}

// short is an attribute key without its namespace.
func short(key string) string {
	key = strings.TrimPrefix(key, "resilient.")
	return strings.TrimPrefix(key, "http.")
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

func status(s sdktrace.ReadOnlySpan) int64 {
	for _, kv := range s.Attributes() {
		if kv.Key == "http.response.status_code" {
			return kv.Value.AsInt64()
		}
	}
	return 0
}

func count(ss []string, v string) int {
	n := 0
	for _, s := range ss {
		if s == v {
			n++
		}
	}
	return n
}

func hasEvent(s sdktrace.ReadOnlySpan, name string) bool {
	return slices.ContainsFunc(s.Events(), func(ev sdktrace.Event) bool { return ev.Name == name })
}
