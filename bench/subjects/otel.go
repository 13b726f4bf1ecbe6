package subjects

import (
	"context"
	"errors"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/resilientclient/resilient/engine"
)

// engineOTelSubject is the engine with the OpenTelemetry SDK recording: every span sampled and
// handed to a batch span processor (as production setups do) whose exporter discards, and metrics
// aggregated by the SDK for a reader that is never collected.
func engineOTelSubject() Subject {
	return Subject{
		Name: "engine-otel",
		Setup: "The engine as above plus `WithTracerProvider` and `WithMeterProvider` with the OpenTelemetry SDK recording: every span sampled " +
			"(`AlwaysSample`) and batched (`WithBatcher`, default sizes) to an exporter that discards; metrics aggregated for a `ManualReader`.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardExporter{}))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			c, err := newEngineClient(env, engine.WithTracerProvider(tp), engine.WithMeterProvider(mp))
			if err != nil {
				ctx := context.Background()
				return nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
			}
			return &otelClient{Client: c, tp: tp, mp: mp}, nil
		},
	}
}

// otelClient is the engine's client that also shuts the SDK providers down.
type otelClient struct {
	Client
	tp *sdktrace.TracerProvider
	mp *sdkmetric.MeterProvider
}

func (o *otelClient) Close(ctx context.Context) error {
	return errors.Join(o.Client.Close(ctx), o.tp.Shutdown(ctx), o.mp.Shutdown(ctx))
}

// discardExporter receives spans and drops them: the cost measured is recording and batching,
// not shipping.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
