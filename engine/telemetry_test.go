package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// rig is an OpenTelemetry SDK that keeps everything in memory, a log buffer, and what the fake API
// saw of each request: the traceparent and Idempotency-Key headers, by path, in arrival order.
type rig struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	logs   syncBuffer

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	path, traceparent, idemKey string
}

func newRig(t *testing.T) *rig {
	r := &rig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

// observe is the fake API's Observe hook.
func (r *rig) observe(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, seenRequest{path: req.URL.Path, traceparent: req.Header.Get("Traceparent"), idemKey: req.Header.Get("Idempotency-Key")})
}

func (r *rig) seenAt(path string) []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seenRequest
	for _, s := range r.seen {
		if s.path == path {
			out = append(out, s)
		}
	}
	return out
}

func (r *rig) options() []engine.Option {
	return []engine.Option{
		engine.WithTracerProvider(r.tp), engine.WithMeterProvider(r.mp),
		engine.WithPropagator(propagation.TraceContext{}),
		engine.WithLogger(slog.New(slog.NewJSONHandler(&r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
}

func (r *rig) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// ended waits (a little) until n spans named name have ended, and returns them: a refresh's span
// ends on the token actor just after it released the requests that waited for it.
func (r *rig) ended(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.named(name)) >= n }, 2*time.Second, time.Millisecond, "%d %q spans", n, name)
	return r.named(name)
}

func (r *rig) children(parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.Parent().TraceID() == parent.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

func (r *rig) metrics(t *testing.T) map[string]metricdata.Metrics {
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func eventAttr(ev sdktrace.Event, key string) attribute.Value {
	for _, kv := range ev.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func traceparentOf(s sdktrace.ReadOnlySpan) string {
	return fmt.Sprintf("00-%s-%s-01", s.SpanContext().TraceID(), s.SpanContext().SpanID())
}

func fastRetries() engine.Option {
	return engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: 2 * time.Millisecond, MaxDelay: 10 * time.Millisecond})
}

// A request answered 503, 503, 200 is one logical span (a child of the caller's span) with three
// CLIENT children, the 2nd and 3rd carrying http.request.resend_count, two backoff events, and every
// send carried its own CLIENT span's traceparent to the server.
func TestTraceRetriedRequest(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), append(r.options(), fastRetries())...)
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 2)

	ctx, caller := r.tp.Tracer("test").Start(context.Background(), "caller")
	got, err := engine.GetJSON[item](ctx, e, "/items/1")
	caller.End()
	require.NoError(t, err)
	require.Equal(t, "1", got.ID)

	logical := r.named("resilient GET")
	require.Len(t, logical, 1)
	l := logical[0]
	assert.Equal(t, trace.SpanKindInternal, l.SpanKind())
	assert.Equal(t, caller.SpanContext().SpanID(), l.Parent().SpanID(), "the logical span is the caller's child")
	assert.Equal(t, codes.Unset, l.Status().Code)
	v, _ := attr(l, engine.AttrAttempts)
	assert.Equal(t, int64(3), v.AsInt64())
	v, _ = attr(l, engine.AttrBackoff)
	assert.Greater(t, v.AsFloat64(), 0.0)
	v, _ = attr(l, engine.AttrTokenGeneration)
	assert.Equal(t, int64(1), v.AsInt64())
	v, _ = attr(l, "http.response.status_code")
	assert.Equal(t, int64(200), v.AsInt64())

	var retries []sdktrace.Event
	for _, ev := range l.Events() {
		if ev.Name == "retry scheduled" {
			retries = append(retries, ev)
		}
	}
	require.Len(t, retries, 2)
	for i, ev := range retries {
		assert.Equal(t, "status_503", eventAttr(ev, engine.AttrRetryReason).AsString())
		assert.Equal(t, "backoff", eventAttr(ev, "resilient.retry.source").AsString())
		assert.Equal(t, int64(i+1), eventAttr(ev, "http.request.resend_count").AsInt64())
	}

	sends := r.children(l)
	require.Len(t, sends, 3)
	seen := r.seenAt("/items/1")
	require.Len(t, seen, 3)
	for i, s := range sends {
		assert.Equal(t, "GET", s.Name())
		assert.Equal(t, trace.SpanKindClient, s.SpanKind())
		rc, ok := attr(s, "http.request.resend_count")
		if i == 0 {
			assert.False(t, ok, "the first send is not a resend")
		} else {
			assert.Equal(t, int64(i), rc.AsInt64())
		}
		status, _ := attr(s, "http.response.status_code")
		errType, hasErr := attr(s, "error.type")
		if i < 2 {
			assert.Equal(t, int64(503), status.AsInt64())
			assert.Equal(t, "503", errType.AsString())
			assert.Equal(t, codes.Error, s.Status().Code)
		} else {
			assert.Equal(t, int64(200), status.AsInt64())
			assert.False(t, hasErr)
		}
		assert.Equal(t, traceparentOf(s), seen[i].traceparent, "send %d carried its own span to the server", i)
	}
}

// 100 requests that find the token revoked park behind one refresh: one "token refresh" span (the
// root of its own trace, linked to the request that started it, with its own CLIENT child that
// carried its traceparent to the token endpoint), and every one of the 100 logical spans links to it.
func TestTraceHerdLinksToOneRefresh(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), r.options()...)
	srv.ExpireAccessTokens()
	srv.SetTokenDelay(100 * time.Millisecond)

	fanOut(100, func(int) {
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		assert.NoError(t, err)
	})
	require.Equal(t, int64(1), srv.Stats().RefreshCalls)

	refreshes := r.ended(t, "token refresh", 1)
	require.Len(t, refreshes, 1)
	rs := refreshes[0]
	assert.False(t, rs.Parent().IsValid(), "a refresh is the root of its own trace")
	outcome, _ := attr(rs, engine.AttrRefreshOutcome)
	assert.Equal(t, "success", outcome.AsString())
	gen, _ := attr(rs, engine.AttrTokenGeneration)
	assert.Equal(t, int64(2), gen.AsInt64())
	proactive, _ := attr(rs, "resilient.refresh.proactive")
	assert.False(t, proactive.AsBool())
	require.Len(t, rs.Links(), 1, "linked to the request that started it")

	logical := r.named("resilient GET")
	require.Len(t, logical, 100)
	trigger := false
	for _, l := range logical {
		linked := slices.ContainsFunc(l.Links(), func(k sdktrace.Link) bool { return k.SpanContext.Equal(rs.SpanContext()) })
		assert.True(t, linked, "every released request links to the refresh")
		trigger = trigger || l.SpanContext().Equal(rs.Links()[0].SpanContext)
		names := []string{}
		for _, ev := range l.Events() {
			names = append(names, ev.Name)
		}
		assert.Subset(t, names, []string{"parked", "released"})
		parked, _ := attr(l, engine.AttrParked)
		assert.Greater(t, parked.AsFloat64(), 0.0)
	}
	assert.True(t, trigger, "the refresh links to one of the requests")

	calls := r.children(rs)
	require.Len(t, calls, 1)
	assert.Equal(t, trace.SpanKindClient, calls[0].SpanKind())
	seen := r.seenAt("/oauth/token")
	require.Len(t, seen, 1)
	assert.Equal(t, traceparentOf(calls[0]), seen[0].traceparent, "the refresh call carries the refresh's trace")
}

// A refresh call that fails with 503 is retried under the refresh span: two CLIENT children, the
// second with resend_count 1, a backoff event, and both traceparents reach the token endpoint.
func TestTraceRefreshRetried(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), append(r.options(), fastRetries())...)
	srv.ExpireAccessTokens()
	srv.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"busy"}`, 1)

	_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	refreshes := r.ended(t, "token refresh", 1)
	require.Len(t, refreshes, 1)
	calls := r.children(refreshes[0])
	require.Len(t, calls, 2)
	_, first := attr(calls[0], "http.request.resend_count")
	assert.False(t, first)
	rc, _ := attr(calls[1], "http.request.resend_count")
	assert.Equal(t, int64(1), rc.AsInt64())
	seen := r.seenAt("/oauth/token")
	require.Len(t, seen, 2)
	for i := range calls {
		assert.Equal(t, traceparentOf(calls[i]), seen[i].traceparent)
	}
	assert.True(t, slices.ContainsFunc(refreshes[0].Events(), func(ev sdktrace.Event) bool { return ev.Name == "retry scheduled" }))
}

// A refused refresh: the refresh span has an error status and outcome "expired", every parked
// request's logical span carries error.type session_expired and links to it, and the log record
// of the session's end names the refresh's trace.
func TestTraceFailedRefresh(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), r.options()...)
	srv.ExpireAccessTokens()
	srv.SetTokenDelay(50 * time.Millisecond)
	srv.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant"}`, -1)

	fanOut(20, func(int) {
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		assert.ErrorIs(t, err, engine.ErrSessionExpired)
	})
	refreshes := r.ended(t, "token refresh", 1)
	require.Len(t, refreshes, 1)
	rs := refreshes[0]
	assert.Equal(t, codes.Error, rs.Status().Code)
	outcome, _ := attr(rs, engine.AttrRefreshOutcome)
	assert.Equal(t, "expired", outcome.AsString())

	logical := r.named("resilient GET")
	require.Len(t, logical, 20)
	for _, l := range logical {
		assert.Equal(t, codes.Error, l.Status().Code)
		et, _ := attr(l, "error.type")
		assert.Equal(t, "session_expired", et.AsString())
		assert.True(t, slices.ContainsFunc(l.Links(), func(k sdktrace.Link) bool { return k.SpanContext.Equal(rs.SpanContext()) }))
	}

	// The record is written once the requesters were answered: wait for it.
	var record map[string]any
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "session expired" {
				record = m
			}
		}
		return record != nil
	}, 5*time.Second, 5*time.Millisecond, "logs: %s", r.logs.String())
	assert.Equal(t, rs.SpanContext().TraceID().String(), record["trace_id"])
	assert.Equal(t, rs.SpanContext().SpanID().String(), record["span_id"])
}

// The metrics agree with what the fake API saw: one http.client.request.duration point per request
// it received (API and token endpoint), the retries it caused by reason, one refresh, one logical
// duration per request made, and no request left counted as parked.
func TestMetricsMatchTheServer(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), append(r.options(), fastRetries())...)

	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 2)
	_, err := engine.GetJSON[item](context.Background(), e, "/items/1") // 3 sends, 2 retries
	require.NoError(t, err)
	srv.ExpireAccessTokens()
	srv.SetTokenDelay(50 * time.Millisecond)
	fanOut(30, func(int) { // 30 sends that get 401, one refresh, 30 resends
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		assert.NoError(t, err)
	})
	st := srv.Stats()
	require.Equal(t, int64(1), st.RefreshCalls)

	r.ended(t, "token refresh", 1) // its measurements are taken when its span ends
	m := r.metrics(t)
	sends := m["http.client.request.duration"].Data.(metricdata.Histogram[float64])
	var points uint64
	byStatus := map[int64]uint64{}
	for _, p := range sends.DataPoints {
		points += p.Count
		s, _ := p.Attributes.Value("http.response.status_code")
		byStatus[s.AsInt64()] += p.Count
	}
	assert.Equal(t, uint64(st.APIRequests+st.RefreshCalls), points, "one duration per request the server received")
	assert.Equal(t, uint64(2), byStatus[503])
	assert.Equal(t, uint64(st.Unauthorized), byStatus[401])

	logical := m[engine.MetricRequestDuration].Data.(metricdata.Histogram[float64])
	var n uint64
	for _, p := range logical.DataPoints {
		n += p.Count
	}
	assert.Equal(t, uint64(31), n)

	retries := m[engine.MetricRetries].Data.(metricdata.Sum[int64])
	require.Len(t, retries.DataPoints, 1)
	reason, _ := retries.DataPoints[0].Attributes.Value(attribute.Key(engine.AttrRetryReason))
	assert.Equal(t, "status_503", reason.AsString())
	assert.Equal(t, int64(2), retries.DataPoints[0].Value)

	refreshes := m[engine.MetricRefreshes].Data.(metricdata.Sum[int64])
	require.Len(t, refreshes.DataPoints, 1)
	assert.Equal(t, int64(1), refreshes.DataPoints[0].Value)
	outcome, _ := refreshes.DataPoints[0].Attributes.Value(attribute.Key(engine.AttrRefreshOutcome))
	assert.Equal(t, "success", outcome.AsString())

	parked := m[engine.MetricParked].Data.(metricdata.Sum[int64])
	require.Len(t, parked.DataPoints, 1)
	assert.Equal(t, int64(0), parked.DataPoints[0].Value, "every parked request was released")
}

// Nothing secret reaches telemetry: every span (names, attributes, events, links, statuses), metric
// attribute and log record, over refreshes, retries, lost orders with Idempotency-Keys, an expired
// session and a URL with a secret query value, is searched for every token the server issued, every
// key the server saw, and the query secret.
func TestTelemetryKeepsNoSecrets(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), append(r.options(), fastRetries())...)

	run := func() {
		fanOut(20, func(i int) {
			_, _ = engine.GetJSON[item](context.Background(), e, "/items/1?api_key=QUERYSECRET123")
			_, _ = engine.PostJSON[map[string]any](context.Background(), e, "/orders", map[string]any{"sku": i})
		})
	}
	run()
	srv.SetOrderLoss(5)
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 5)
	srv.ExpireAccessTokens()
	run()
	srv.ExpireAccessTokens()
	srv.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant"}`, -1)
	run()

	var text strings.Builder
	for _, s := range r.spans.Ended() {
		fmt.Fprintln(&text, s.Name(), s.Status(), s.Attributes(), s.Events(), s.Links())
	}
	fmt.Fprintln(&text, r.metrics(t))
	text.WriteString(r.logs.String())
	all := text.String()

	var secrets []string
	for _, tok := range srv.IssuedTokens() {
		secrets = append(secrets, tok[:16])
	}
	keys := 0
	for _, s := range r.seenAt("/orders") {
		if s.idemKey != "" {
			secrets = append(secrets, s.idemKey)
			keys++
		}
	}
	secrets = append(secrets, "QUERYSECRET123")
	require.Greater(t, keys, 20, "orders were sent with keys")
	require.Greater(t, len(srv.IssuedTokens()), 3, "tokens were rotated")
	require.Contains(t, all, "session_expired", "the session's end is in the telemetry searched")
	require.Contains(t, all, engine.AttrIdempotencyKeyPresent)
	for _, s := range secrets {
		assert.NotContains(t, all, s)
	}
	t.Logf("searched %d bytes of telemetry (%d spans) for %d secrets", len(all), len(r.spans.Ended()), len(secrets))
}

// With no provider given, the engine follows the global ones: an SDK installed after New (and after
// requests were made) gets the spans of the next request at once, and only that request's own.
func TestFollowsGlobalProviders(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{})
	e := newEngine(t, srv, srv.Login("ann"))
	t.Cleanup(func() { otel.SetTracerProvider(tracenoop.NewTracerProvider()) })

	_, err := engine.GetJSON[item](context.Background(), e, "/items/1") // before any SDK: nothing to record to
	require.NoError(t, err)

	otel.SetTracerProvider(r.tp)
	_, err = engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	assert.Len(t, r.named("resilient GET"), 1)
	assert.Len(t, r.named("GET"), 1)
	assert.Len(t, r.spans.Started(), 2, "no span is started but the request's own")
}

// With the usual global setup (an SDK and a composite propagator, which cannot be compared with ==)
// every request starts exactly its own spans, ends them all, and sends a traceparent.
func TestGlobalSDKWithCompositePropagator(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"))
	otel.SetTracerProvider(r.tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	for range 20 {
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		require.NoError(t, err)
	}
	assert.Len(t, r.spans.Started(), 40)
	assert.Len(t, r.spans.Ended(), 40)
	for _, s := range r.seenAt("/items/1") {
		assert.NotEmpty(t, s.traceparent)
	}
}

// With no SDK installed, the global propagator is followed as it changes: while the application has
// set none, nothing is written (and the caller's context is not searched for a span to write);
// once it sets one, the same engine passes the caller's trace context on at once.
func TestGlobalPropagatorSetAfterNew(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"))
	caller := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, Remote: true}))

	_, err := engine.GetJSON[item](caller, e, "/items/1")
	require.NoError(t, err)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	_, err = engine.GetJSON[item](caller, e, "/items/2")
	require.NoError(t, err)

	require.Len(t, r.seenAt("/items/1"), 1)
	assert.Empty(t, r.seenAt("/items/1")[0].traceparent, "no propagator set (or an empty composite): nothing written")
	require.Len(t, r.seenAt("/items/2"), 1)
	assert.Equal(t, "00-07000000000000000000000000000000-0700000000000000-01", r.seenAt("/items/2")[0].traceparent)
}

// Unusual propagators and providers a stranger may give the engine: each request is answered, and
// trace context goes out whenever the propagator would write it.
func TestUnusualPropagatorsAndProviders(t *testing.T) {
	const want = "00-07000000000000000000000000000000-0700000000000000-01"
	cases := []struct {
		name        string
		opts        func() []engine.Option
		after       func(t *testing.T) // runs between the two requests
		traceparent bool               // the second request carries the caller's traceparent
	}{
		{"a struct wrapping a composite propagator", func() []engine.Option {
			return []engine.Option{engine.WithPropagator(wrappedPropagator{propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})})}
		}, nil, true},
		{"the global stand-in captured in WithPropagator, set afterwards", func() []engine.Option {
			return []engine.Option{engine.WithPropagator(globalStandIn)}
		}, func(t *testing.T) { setGlobalPropagator(t, propagation.TraceContext{}) }, true},
		{"a propagator that names no fields but writes", func() []engine.Option {
			return []engine.Option{engine.WithPropagator(fieldlessPropagator{})}
		}, nil, true},
		{"a global propagator that names no fields but writes", func() []engine.Option { return nil },
			func(t *testing.T) { setGlobalPropagator(t, fieldlessPropagator{}) }, true},
		{"a nil global propagator", func() []engine.Option { return nil }, func(t *testing.T) {
			setGlobalPropagator(t, propagation.NewCompositeTextMapPropagator()) // (the stand-in forwards to the first one set)
			setGlobalPropagator(t, nil)
		}, false},
		{"a struct wrapping a tracer provider that cannot be compared", func() []engine.Option {
			return []engine.Option{engine.WithTracerProvider(wrappedTracerProvider{uncomparableTracerProvider{}}),
				engine.WithPropagator(propagation.TraceContext{})}
		}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			srv := startAPI(t, fakeapi.Options{Observe: r.observe})
			e := newEngine(t, srv, srv.Login("ann"), tc.opts()...)
			caller := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, Remote: true}))
			_, err := engine.GetJSON[item](caller, e, "/items/1")
			require.NoError(t, err)
			if tc.after != nil {
				tc.after(t)
			}
			_, err = engine.GetJSON[item](caller, e, "/items/2")
			require.NoError(t, err)
			require.Len(t, r.seenAt("/items/2"), 1)
			if tc.traceparent {
				assert.Equal(t, want, r.seenAt("/items/2")[0].traceparent)
			} else {
				assert.Empty(t, r.seenAt("/items/2")[0].traceparent)
			}
		})
	}
}

// globalStandIn is what otel.GetTextMapPropagator returns before any test sets a propagator: the
// otel package's stand-in, which forwards to the first propagator set, whenever that happens.
var globalStandIn = otel.GetTextMapPropagator()

// setGlobalPropagator sets the global propagator for the rest of the test.
func setGlobalPropagator(t *testing.T, p propagation.TextMapPropagator) {
	otel.SetTextMapPropagator(p)
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
}

// wrappedPropagator is a comparable struct type whose value may not be (a composite is a slice).
type wrappedPropagator struct{ propagation.TextMapPropagator }

// fieldlessPropagator writes W3C trace context but, against the API's contract, names no fields.
type fieldlessPropagator struct{ propagation.TraceContext }

func (fieldlessPropagator) Fields() []string { return nil }

// uncomparableTracerProvider makes no spans and cannot be compared (a func field).
type uncomparableTracerProvider struct {
	tracenoop.TracerProvider
	_ func()
}

// wrappedTracerProvider is a comparable struct type holding an uncomparable value.
type wrappedTracerProvider struct{ trace.TracerProvider }

// A span processor (or sampler) that panics when the refresh's span starts must not leave the
// requests parked behind that refresh waiting: the refresh runs untraced and releases them.
func TestPanickingSamplerDoesNotStrandParkedRequests(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(panicOn{"token refresh"}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := startAPI(t, fakeapi.Options{})
	tokens := srv.Login("ann")
	tokens.Expiry = time.Now().Add(-time.Second) // known expired: requests park for the refresh
	e := newEngine(t, srv, tokens, engine.WithTracerProvider(tp))
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := engine.GetJSON[item](ctx, e, "/items/1")
		cancel()
		require.NoError(t, err, "released, not stranded")
		assert.Less(t, time.Since(start), 2*time.Second)
	}
}

// panicOn is a sampler that panics for spans of one name, as a buggy one might.
type panicOn struct{ name string }

func (p panicOn) ShouldSample(params sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if params.Name == p.name {
		panic("sampler bug")
	}
	return sdktrace.AlwaysSample().ShouldSample(params)
}

func (p panicOn) Description() string { return "panicOn" }

// The retry budget's refusals and the requests held by a host's cool-down are counted, and the
// counts match the events the engine published for the same requests.
func TestMetricsBudgetAndCoolDown(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{Observe: r.observe})
	e := newEngine(t, srv, srv.Login("ann"), append(r.options(),
		engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, BudgetRatio: 0.01, BudgetPerSecond: 1}))...)
	events := subscribe(e)

	srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1) // down, without Retry-After
	fanOut(40, func(int) { _, _ = engine.GetJSON[item](context.Background(), e, "/items/1") })
	srv.SetAPIFailure(0, "", 0)

	isExhausted := func(ev engine.Event) bool { _, ok := ev.(*engine.RetryBudgetExhausted); return ok }
	require.Eventually(t, func() bool { return events.count(isExhausted) > 0 }, 2*time.Second, 5*time.Millisecond)
	time.Sleep(20 * time.Millisecond) // events are delivered on their own goroutine
	m := r.metrics(t)
	exhausted := m[engine.MetricBudgetExhausted].Data.(metricdata.Sum[int64])
	require.Len(t, exhausted.DataPoints, 1)
	assert.Equal(t, int64(events.count(isExhausted)), exhausted.DataPoints[0].Value)
	assert.Greater(t, exhausted.DataPoints[0].Value, int64(30), "most of the 40 were refused a retry")

	// A 503 with Retry-After: 1 cools the host down; requests made meanwhile wait, and say so.
	srv.SetAPIFailure(http.StatusServiceUnavailable, "1", 1)
	first := make(chan error, 1)
	go func() { _, err := engine.GetJSON[item](context.Background(), e, "/items/1"); first <- err }()
	require.Eventually(t, func() bool { return len(r.seenAt("/items/1")) > 40 }, 2*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	fanOut(5, func(int) {
		_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
		assert.NoError(t, err)
	})
	<-first // its own retry may be refused: the budget is still spent from the outage
	waits := r.metrics(t)[engine.MetricCoolDownWaits].Data.(metricdata.Sum[int64])
	require.Len(t, waits.DataPoints, 1)
	assert.GreaterOrEqual(t, waits.DataPoints[0].Value, int64(5))
	var held int
	for _, s := range r.named("resilient GET") {
		if slices.ContainsFunc(s.Events(), func(ev sdktrace.Event) bool { return ev.Name == "cool-down wait" }) {
			held++
		}
	}
	assert.Equal(t, int(waits.DataPoints[0].Value), held, "one event per held request")
}

// An engine whose tracing is off leaves the caller's own span alone: it neither ends it nor adds
// events to it, even when the request is retried and parks behind a refresh.
func TestTracingOffLeavesCallersSpanAlone(t *testing.T) {
	r := newRig(t)
	srv := startAPI(t, fakeapi.Options{})
	e := newEngine(t, srv, srv.Login("ann"), engine.WithTracerProvider(tracenoop.NewTracerProvider()), fastRetries())
	srv.ExpireAccessTokens()
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", 1)

	ctx, caller := r.tp.Tracer("test").Start(context.Background(), "caller")
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	assert.True(t, caller.IsRecording(), "the caller's span is still open")
	caller.End()
	spans := r.spans.Ended()
	require.Len(t, spans, 1)
	assert.Empty(t, spans[0].Events())
	assert.Empty(t, spans[0].Links())
}

// With an attempt timeout, each send runs under a context of its own; once the caller is done with
// the answer, that context is released, even for a request whose own context can never be
// cancelled (context.Background): nothing of the request is kept until Close.
func TestAttemptContextReleasedWhenDone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	var mu sync.Mutex
	var seen []context.Context
	capture := roundTripper(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		seen = append(seen, r.Context())
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	e, err := engine.NewPublic(engine.WithTransport(capture), engine.WithRetryPolicy(engine.RetryPolicy{AttemptTimeout: time.Minute}))
	require.NoError(t, err)
	defer closeEngine(t, e)
	for range 20 {
		resp, err := e.Client().Get(srv.URL)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 20)
	for i, ctx := range seen {
		assert.Error(t, ctx.Err(), "send %d: its context was released when the caller closed the body", i)
	}
}
