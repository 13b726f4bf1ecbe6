package subjects

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/resilientclient/resilient/engine"
)

// sdkProviders are the SDK providers the traced subjects record with: spans chosen by sampler and
// handed to a batch span processor (as production setups do) whose exporter discards, and metrics
// aggregated by the SDK for a reader that is never collected.
func sdkProviders(sampler sdktrace.Sampler) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discardExporter{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	return tp, mp
}

// Names of the traced subjects.
const (
	// OTelHTTP is the reference for what tracing costs: raw net/http instrumented the standard way.
	OTelHTTP = "otelhttp"
	// EngineOTel is the engine with the SDK recording every request.
	EngineOTel = "engine-otel"
	// EngineOTelSampled is the engine with the SDK sampling one trace in ten, as production
	// setups often do: what the nine in ten requests that are not recorded cost.
	EngineOTelSampled = "engine-otel-sampled"
)

// sampledRatio is the share of traces EngineOTelSampled records.
const sampledRatio = 0.1

// otelhttpSubject is raw net/http with the transport wrapped by otelhttp, the OpenTelemetry
// project's own instrumentation, recording into the same SDK setup as engine-otel: what a user
// pays for tracing without the engine. It does not refresh or retry.
func otelhttpSubject() Subject {
	return Subject{
		Name: OTelHTTP,
		Setup: "Raw net/http as above with the shared transport wrapped by `otelhttp.NewTransport` (one CLIENT span and the " +
			"`http.client.request.duration` histogram per request), recording into the same SDK setup as engine-otel; no refresh, no retry. " +
			"A reference for what tracing costs on its own.",
		New: func(env Env) (Client, error) {
			tp, mp := sdkProviders(sdktrace.AlwaysSample())
			tr := otelhttp.NewTransport(env.Transport, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
			return &otelClient{Client: &rawClient{c: &http.Client{Transport: tr}, auth: bearer(env.Tokens.Access)}, tp: tp, mp: mp}, nil
		},
	}
}

// engineOTelSubject is the engine with the OpenTelemetry SDK recording every request.
func engineOTelSubject() Subject {
	return engineWithSDK(EngineOTel, sdktrace.AlwaysSample(),
		"The engine as above plus `WithTracerProvider` and `WithMeterProvider` with the OpenTelemetry SDK recording: every span sampled "+
			"(`AlwaysSample`) and batched (`WithBatcher`, default sizes) to an exporter that discards; metrics aggregated for a `ManualReader`.")
}

// engineOTelSampledSubject is the engine with the SDK sampling one trace in ten.
func engineOTelSampledSubject() Subject {
	return engineWithSDK(EngineOTelSampled, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(sampledRatio)),
		"As engine-otel, but the sampler is `ParentBased(TraceIDRatioBased(0.1))`: one logical request in ten is recorded, the others "+
			"only pass their (unsampled) trace context on; every request is measured by the metrics.")
}

func engineWithSDK(name string, sampler sdktrace.Sampler, setup string) Subject {
	return Subject{
		Name:      name,
		Setup:     setup,
		Refreshes: true,
		New: func(env Env) (Client, error) {
			tp, mp := sdkProviders(sampler)
			c, err := newEngineClient(env, engine.WithTracerProvider(tp), engine.WithMeterProvider(mp))
			if err != nil {
				ctx := context.Background()
				return nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
			}
			return &otelClient{Client: c, tp: tp, mp: mp}, nil
		},
	}
}

// otelClient is a traced subject's client that also shuts the SDK providers down.
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
