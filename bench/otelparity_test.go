package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/engine"
)

// sdkRig is an OpenTelemetry SDK that keeps every span and metric in memory.
type sdkRig struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newSDKRig(t *testing.T) *sdkRig {
	r := &sdkRig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

// clientSpan is the one CLIENT span recorded.
func (r *sdkRig) clientSpan(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range r.spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			return s
		}
	}
	t.Fatal("no CLIENT span")
	return nil
}

// durationPoint is the attribute set of the one http.client.request.duration point recorded.
func (r *sdkRig) durationPoint(t *testing.T) attribute.Set {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "http.client.request.duration" {
				h, ok := m.Data.(metricdata.Histogram[float64])
				require.True(t, ok)
				require.Len(t, h.DataPoints, 1)
				return h.DataPoints[0].Attributes
			}
		}
	}
	t.Fatal("no http.client.request.duration")
	return attribute.Set{}
}

// The engine's CLIENT spans and http.client.request.duration carry what otelhttp's do for the same
// send (a dashboard built on otelhttp works unchanged): for an answer, and for a transport error.
// It lives here, beside the harness, so that otelhttp is a dependency of the benchmarks only.
func TestSameAttributesAsOtelhttp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"answer 418", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }},
		{"connection dropped", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			get := func(c *http.Client) {
				resp, err := c.Get(srv.URL + "/x/y")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			defer tr.CloseIdleConnections()
			theirs := newSDKRig(t)
			get(&http.Client{Transport: otelhttp.NewTransport(tr, otelhttp.WithTracerProvider(theirs.tp), otelhttp.WithMeterProvider(theirs.mp))})
			ours := newSDKRig(t)
			e, err := engine.NewPublic(engine.WithTransport(tr), engine.WithMaxRetries(0),
				engine.WithTracerProvider(ours.tp), engine.WithMeterProvider(ours.mp))
			require.NoError(t, err)
			defer func() { assert.NoError(t, e.Close(context.Background())) }()
			get(e.Client())

			want, got := theirs.clientSpan(t), ours.clientSpan(t)
			assert.ElementsMatch(t, want.Attributes(), got.Attributes())
			assert.Equal(t, want.Status().Code, got.Status().Code)
			assert.Equal(t, "GET", got.Name(), "the conventions name a client span by its method (otelhttp: %q)", want.Name())
			want2, got2 := theirs.durationPoint(t), ours.durationPoint(t)
			assert.ElementsMatch(t, want2.ToSlice(), got2.ToSlice())
		})
	}
}
