package engine_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/resilientclient/resilient/engine"
)

// memAPI answers every request with a small 200 in memory, so a benchmark sees only the client.
type memAPI struct{}

func (memAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(`{"id":"1"}`)), ContentLength: 10, Request: req}, nil
}

// BenchmarkTelemetry measures what tracing costs per request (valid token, GET 200, in-memory
// transport): the engine with the global providers unset, with explicit no-op providers, with the
// SDK recording every span and metric, and with the SDK sampling one trace in ten. otelhttp on the
// same SDK is compared in bench/ (the harness, and bench/cmd/instructions), so that it is no
// dependency of the engine's module.
//
//	go test -run '^$' -bench Telemetry -benchmem -count 6 ./engine
func BenchmarkTelemetry(b *testing.B) {
	const url = "http://api.test/items/1"
	sdk := func(b *testing.B, sampler sdktrace.Sampler) (trace.TracerProvider, metric.MeterProvider) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler)) // records, exports nowhere
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
		return tp, mp
	}
	run := func(b *testing.B, c *http.Client) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}
	b.Run("raw", func(b *testing.B) { run(b, &http.Client{Transport: memAPI{}}) })
	engineWith := func(b *testing.B, opts ...engine.Option) *http.Client {
		e, err := engine.New(append([]engine.Option{engine.WithBaseURL("http://api.test"), engine.WithTransport(memAPI{}),
			engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}),
			engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil })}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = e.Close(context.Background()) })
		return e.Client()
	}
	b.Run("engine-global-unset", func(b *testing.B) { run(b, engineWith(b)) })
	b.Run("engine-noop", func(b *testing.B) {
		run(b, engineWith(b, engine.WithTracerProvider(tracenoop.NewTracerProvider()), engine.WithMeterProvider(metricnoop.NewMeterProvider())))
	})
	b.Run("engine-sdk", func(b *testing.B) {
		tp, mp := sdk(b, sdktrace.AlwaysSample())
		run(b, engineWith(b, engine.WithTracerProvider(tp), engine.WithMeterProvider(mp), engine.WithPropagator(propagation.TraceContext{})))
	})
	b.Run("engine-sdk-sampled", func(b *testing.B) {
		tp, mp := sdk(b, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
		run(b, engineWith(b, engine.WithTracerProvider(tp), engine.WithMeterProvider(mp), engine.WithPropagator(propagation.TraceContext{})))
	})
}
