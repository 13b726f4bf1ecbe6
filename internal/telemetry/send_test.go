package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// countingSampler is a real SDK sampler that counts the spans it is asked about.
type countingSampler struct {
	sdktrace.Sampler
	asked atomic.Int32
}

func (s *countingSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.asked.Add(1)
	return s.Sampler.ShouldSample(p)
}

// A send of a request the sampler dropped starts no span of its own (it would be dropped too, at
// the cost of an id, a span and a copy of the request): the sampler is asked once per request, and
// the send carries the logical request's unsampled trace context. A recorded request's send gets
// its CLIENT span, child of the logical one.
func TestSendSpanOnlyUnderARecordingParent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
		asked   int32
		spans   int
	}{
		{"dropped", sdktrace.ParentBased(sdktrace.NeverSample()), 1, 0},
		{"recorded", sdktrace.ParentBased(sdktrace.AlwaysSample()), 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sampler := &countingSampler{Sampler: tc.sampler}
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(spans))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			tel, err := New(Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider(), Propagator: propagation.TraceContext{}})
			require.NoError(t, err)
			req := httptest.NewRequest(http.MethodGet, "http://a.test/x", nil)

			var l Logical
			ctx := tel.StartLogical(context.Background(), req, time.Now(), &l)
			require.True(t, l.Injects(), "every request passes its trace context on, sampled or not")
			var s Send
			sctx := l.StartSend(ctx, req, 0, &s)
			h := http.Header{}
			l.Inject(sctx, h)
			s.End(sctx, req, &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1"}, nil, time.Now())
			l.End(ctx, req, &http.Response{StatusCode: http.StatusOK}, nil, 1, time.Now())

			assert.Equal(t, tc.asked, sampler.asked.Load(), "spans the sampler was asked about")
			assert.Len(t, spans.Ended(), tc.spans)
			sent := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h))
			sc := trace.SpanContextFromContext(sent)
			require.True(t, sc.IsValid(), "the send carries a traceparent")
			assert.Equal(t, trace.SpanContextFromContext(ctx).TraceID(), sc.TraceID())
			assert.Equal(t, tc.spans > 0, sc.IsSampled())
			if tc.spans == 0 {
				assert.False(t, s.Rebind(), "nothing to rebind: the send's context is the logical one")
			}
		})
	}
}
