// Command instructions sends n GETs with a valid token through one subject over an in-memory
// transport, for counting instructions with callgrind: unlike a timer, the count repeats on a busy
// machine. Run it twice with different n and divide the difference of the totals by the difference
// of n to get the instructions of one request:
//
//	go build -o /tmp/instructions ./cmd/instructions
//	for n in 5000 25000; do GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind \
//	    --callgrind-out-file=/tmp/cg.$n /tmp/instructions -s engine -n $n 2>&1 | grep Collected; done
//
// Subjects: raw, oauth2, engine, engine-family (the same engine, through one of its families),
// engine-cluster (the engine in cluster mode on a MemoryCoordinator),
// engine-sdk (the OpenTelemetry SDK recording every span, batched to
// a discarding exporter) and otelhttp-sdk (raw net/http wrapped by otelhttp on the same SDK), and
// engine-sdk-sampled and otelhttp-sdk-sampled (the same with a ParentBased(TraceIDRatioBased(0.1))
// sampler: one request in ten recorded); -c gives every request a cancellable context instead of
// context.Background.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/resilientclient/resilient/engine"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/oauth2"
)

// discard is a span exporter that drops everything.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// memTransport answers every request with a small 200 in memory.
type memTransport struct{}

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(`{"id":"1"}`)), ContentLength: 10, Request: req}, nil
}

// sdk returns the SDK providers: every span recorded, or with sampled one trace in ten (as
// ParentBased(TraceIDRatioBased(0.1)) decides), batched to a discarding exporter; metrics aggregated
// for a reader that is never collected.
func sdk(sampled bool) (*sdktrace.TracerProvider, *sdkmetric.MeterProvider) {
	sampler := sdktrace.AlwaysSample()
	if sampled {
		sampler = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	return tp, mp
}

func main() {
	subject := flag.String("s", "raw", "raw, oauth2, engine, engine-family, engine-cluster, engine-sdk, otelhttp-sdk, engine-sdk-sampled, otelhttp-sdk-sampled")
	n := flag.Int("n", 20000, "requests")
	cancellable := flag.Bool("c", false, "requests on a cancellable context")
	flag.Parse()
	var c *http.Client
	switch *subject {
	case "raw":
		c = &http.Client{Transport: memTransport{}}
	case "oauth2":
		c = &http.Client{Transport: &oauth2.Transport{Base: memTransport{}, Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})}}
	case "otelhttp-sdk", "otelhttp-sdk-sampled":
		tp, mp := sdk(strings.HasSuffix(*subject, "-sampled"))
		c = &http.Client{Transport: otelhttp.NewTransport(memTransport{}, otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(propagation.TraceContext{}))}
	case "engine-sdk", "engine-sdk-sampled":
		tp, mp := sdk(strings.HasSuffix(*subject, "-sampled"))
		e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(memTransport{}),
			engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}),
			engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil }),
			engine.WithTracerProvider(tp), engine.WithMeterProvider(mp), engine.WithPropagator(propagation.TraceContext{}))
		if err != nil {
			panic(err)
		}
		defer e.Close(context.Background())
		c = e.Client()
	case "engine", "engine-family", "engine-cluster":
		opts := []engine.Option{engine.WithBaseURL("http://api.test"), engine.WithTransport(memTransport{}),
			engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}),
			engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil })}
		if *subject == "engine-cluster" { // cluster mode on: the hot path must not notice
			opts = append(opts, engine.WithCluster(&engine.MemoryCoordinator{}))
		}
		e, err := engine.New(opts...)
		if err != nil {
			panic(err)
		}
		defer e.Close(context.Background())
		c = e.Client()
		if *subject == "engine-family" { // the same engine, through one of its families
			f, err := e.Family("tenant-1")
			if err != nil {
				panic(err)
			}
			if err := f.SetTokens(context.Background(), engine.Tokens{Access: "t", Refresh: "r", Expiry: time.Now().Add(time.Hour)}); err != nil {
				panic(err)
			}
			c = f.Client()
		}
	default:
		fmt.Fprintln(os.Stderr, "instructions: unknown subject", *subject)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !*cancellable {
		ctx = context.Background()
	}
	for range *n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/items/1", nil)
		resp, err := c.Do(req)
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}
