package telemetry

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/resilientclient/resilient/internal/httpx"
)

// ScopeName is the instrumentation scope of the engine's tracer and meter.
const ScopeName = "github.com/resilientclient/resilient"

// Attribute keys for what the conventions have no name for. Durations are in seconds, as the
// conventions use for every duration.
const (
	AttrAttempts       = attribute.Key("resilient.request.attempts")              // physical sends of a logical request
	AttrBackoff        = attribute.Key("resilient.request.backoff")               // seconds spent waiting between attempts
	AttrParked         = attribute.Key("resilient.request.parked")                // seconds spent parked behind a refresh
	AttrGeneration     = attribute.Key("resilient.token.generation")              // token generation sent (or installed by a refresh)
	AttrIdempotencyKey = attribute.Key("resilient.idempotency_key.present")       // whether the request carried one (never its value)
	AttrRetryReason    = attribute.Key("resilient.retry.reason")                  // why a retry was scheduled
	AttrRetryDelay     = attribute.Key("resilient.retry.delay")                   // seconds before the retry
	AttrRetrySource    = attribute.Key("resilient.retry.source")                  // "retry-after" (the server's) or "backoff" (computed)
	AttrRefreshOutcome = attribute.Key("resilient.refresh.outcome")               // success, failed, expired, abandoned
	AttrProactive      = attribute.Key("resilient.refresh.proactive")             // started by the timer before expiry
	AttrReleased       = attribute.Key("resilient.refresh.released")              // parked requests answered when it ended
	AttrCoolDown       = attribute.Key("resilient.cooldown.wait")                 // seconds a request waited for its host's cool-down
	AttrWaitOutcome    = attribute.Key("resilient.park.outcome")                  // how a park ended: token, error, cancelled
	attrRefreshCalls   = attribute.Key("resilient.refresh.calls")                 // calls made to the refresh function
	attrExhausted      = attribute.Key("resilient.retry_budget.exhausted")        // set on a logical span the budget stopped
	attrResendCountKey = attribute.Key(string(semconv.HTTPRequestResendCountKey)) // the conventions' own key
)

// Refresh outcomes, the values of AttrRefreshOutcome.
const (
	RefreshSuccess   = "success"   // new tokens installed
	RefreshFailed    = "failed"    // passing failure: credentials kept, parked requests failed
	RefreshExpired   = "expired"   // definitive failure: the session ended
	RefreshAbandoned = "abandoned" // replaced by SetTokens, or the engine closed
)

// Metric names of the engine's own instruments (http.client.request.duration is the conventions').
const (
	MetricRequestDuration = "resilient.client.request.duration"
	MetricRetries         = "resilient.client.retries"
	MetricRefreshes       = "resilient.client.token.refreshes"
	MetricParked          = "resilient.client.requests.parked"
	MetricBudgetExhausted = "resilient.client.retry_budget.exhausted"
	MetricCoolDownWaits   = "resilient.client.cooldown.waits"
)

// sendName is a CLIENT span's name as the conventions give it when no route template is known: the
// method, or "HTTP" for a method they do not know. (otelhttp's default is "HTTP GET".)
func sendName(method string) string {
	m := methodAttr(method).Value.AsString()
	if m == "_OTHER" {
		return "HTTP"
	}
	return m
}

// serverAttrs are server.address, and server.port when the host names one, for a host as the
// request path keys it ("host[:port]"); none for an unknown host.
func serverAttrs(hostport string) []attribute.KeyValue {
	if hostport == "" {
		return nil
	}
	host, p := httpx.SplitHostPort(hostport)
	port := portNumber(p)
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, semconv.ServerAddress(host))
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	return attrs
}

var methods = map[string]attribute.KeyValue{
	http.MethodConnect: semconv.HTTPRequestMethodConnect,
	http.MethodDelete:  semconv.HTTPRequestMethodDelete,
	http.MethodGet:     semconv.HTTPRequestMethodGet,
	http.MethodHead:    semconv.HTTPRequestMethodHead,
	http.MethodOptions: semconv.HTTPRequestMethodOptions,
	http.MethodPatch:   semconv.HTTPRequestMethodPatch,
	http.MethodPost:    semconv.HTTPRequestMethodPost,
	http.MethodPut:     semconv.HTTPRequestMethodPut,
	http.MethodTrace:   semconv.HTTPRequestMethodTrace,
}

// methodAttr is http.request.method: the method if the conventions know it (in any case), else _OTHER.
func methodAttr(m string) attribute.KeyValue {
	if a, ok := methods[m]; ok {
		return a
	}
	if a, ok := methods[strings.ToUpper(m)]; ok {
		return a
	}
	return semconv.HTTPRequestMethodOther
}

// hostPort is the server address and the port when it is not the scheme's default (-1 then).
func hostPort(u *url.URL) (string, int) {
	host, p := httpx.SplitHostPort(u.Host)
	port := portNumber(p)
	if port == defaultPort(u.Scheme) {
		port = -1
	}
	return host, port
}

func defaultPort(scheme string) int {
	switch {
	case strings.EqualFold(scheme, "https"):
		return 443
	case strings.EqualFold(scheme, "http"):
		return 80
	}
	return -2
}

// portNumber is the port of a host[:port] as httpx.SplitHostPort gives it, as a number: -1 when
// absent or not a port.
func portNumber(port string) int {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// netProtocol splits "HTTP/1.1" into the conventions' network.protocol.name and version.
func netProtocol(proto string) (name, version string) {
	name, version, _ = strings.Cut(proto, "/")
	if name == "HTTP" { // every answer's: no lower-case copy to make
		return "http", version
	}
	return strings.ToLower(name), version
}
