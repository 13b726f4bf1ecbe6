package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/messages"
)

// Ports as the attributes carry them: a number, or none (-1) when absent or not a port.
func TestPortNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port int
	}{
		{"8443", 8443}, {"80", 80}, {"", -1}, {"notaport", -1}, {"99999", -1}, {"-1", -1},
	} {
		assert.Equal(t, tc.port, portNumber(tc.in), tc.in)
	}
}

func TestHostPortDropsDefaultPorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
	}{
		{"https://a.test/x", "a.test", -1},
		{"https://a.test:443/x", "a.test", -1},
		{"http://a.test:80/x", "a.test", -1},
		{"http://a.test:8080/x", "a.test", 8080},
		{"https://a.test:80/x", "a.test", 80},
		{"http://[::1]:8080/x", "::1", 8080},
		{"http://[::1]/x", "::1", -1},
	} {
		u, _ := url.Parse(tc.in)
		host, port := hostPort(u)
		assert.Equal(t, tc.host, host, tc.in)
		assert.Equal(t, tc.port, port, tc.in)
	}
}

func TestMethodAndNames(t *testing.T) {
	for _, tc := range []struct{ method, attr, name string }{
		{"GET", "GET", "GET"},
		{"get", "GET", "GET"},
		{"PATCH", "PATCH", "PATCH"},
		{"PURGE", "_OTHER", "HTTP"},
		{"", "_OTHER", "HTTP"},
	} {
		assert.Equal(t, tc.attr, methodAttr(tc.method).Value.AsString(), tc.method)
		assert.Equal(t, tc.name, sendName(tc.method), tc.method)
	}
}

type namedErr struct{}

func (namedErr) Error() string     { return "named" }
func (namedErr) ErrorType() string { return "my_error" }

func TestErrorTypes(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"session expired", fmt.Errorf("x: %w", messages.ErrSessionExpired), "session_expired"},
		{"refresh failed", fmt.Errorf("%w: boom", messages.ErrRefreshFailed), "refresh_failed"},
		{"closed", messages.ErrClosed, "engine_closed"},
		{"budget", fmt.Errorf("%w: 503", messages.ErrRetryBudgetExhausted), "retry_budget_exhausted"},
		{"retry later", &messages.RetryLaterError{Host: "h", Status: 503}, "retry_later"},
		{"canceled", context.Canceled, "canceled"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{"transport error, as otelhttp names it on metrics", opErr, "net.OpError"},
		{"ErrorType method", namedErr{}, "my_error"},
	} {
		assert.Equal(t, tc.want, ErrorType(tc.err), tc.name)
	}
	assert.Equal(t, "net.OpError", typeName(opErr))
	assert.Equal(t, "_OTHER", typeName(nil))
}

func TestSafeMessageRedactsURLs(t *testing.T) {
	err := &url.Error{Op: "Post", URL: "https://idp.test/token?client_secret=SECRET", Err: errors.New("refused")}
	msg := safeMessage(fmt.Errorf("refresh: %w", err))
	assert.NotContains(t, msg, "SECRET")
	assert.Contains(t, msg, "client_secret=redacted")
	assert.Equal(t, "plain", safeMessage(errors.New("plain")))
}

func TestServerAttrs(t *testing.T) {
	assert.Nil(t, serverAttrs(""))
	assert.Equal(t, []attribute.KeyValue{semconv.ServerAddress("a.test")}, serverAttrs("a.test"))
	assert.Equal(t, []attribute.KeyValue{semconv.ServerAddress("a.test"), semconv.ServerPort(8443)}, serverAttrs("a.test:8443"))
}

// A nil *T (telemetry off) and the zero values it hands out record nothing and never panic.
func TestNilIsOff(t *testing.T) {
	var tel *T
	ctx := context.Background()
	req := httptest.NewRequest(http.MethodGet, "http://a.test/x", nil)
	var l Logical
	ctx2 := tel.StartLogical(ctx, req, time.Now(), &l)
	assert.Equal(t, ctx, ctx2)
	assert.False(t, l.Injects())
	l.Token(3)
	l.RetryScheduled(ctx, "a.test", "status_503", time.Second, false, 1)
	l.BudgetExhausted(ctx, "a.test")
	l.CoolDown(ctx, "a.test", time.Second)
	l.Parked(time.Now(), time.Now(), "token", trace.SpanContext{})
	var s Send
	sctx := l.StartSend(ctx, req, 0, &s)
	assert.Equal(t, ctx, sctx)
	assert.False(t, s.Rebind())
	s.End(ctx, req, nil, errors.New("x"), time.Now())
	l.End(ctx, req, nil, errors.New("x"), 1, time.Now())
	tel.Parking(ctx, 1)
	tel.RefreshRetry(ctx, "a.test", "timeout", time.Second, false, 1)
	_, r := tel.StartRefresh(ctx, "a.test", false, trace.SpanContext{})
	assert.False(t, r.SpanContext().IsValid())
	r.End(ctx, RefreshSuccess, 1, 0, nil, time.Now())
	assert.Equal(t, http.DefaultTransport, tel.Transport(http.DefaultTransport))
}
