package messages

import (
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The supervisor's protocol. Request actors ask it before every retry (RetryAsk), tell it when a
// host asks for a pause (CoolDown), and report their own panics (RequestPanicked). It owns the state
// every request shares: the retry budget and the per-host cool-downs.

// RetryAsk asks the supervisor whether a logical request may make attempt Attempt after waiting
// Delay. The supervisor charges the host's retry budget and answers on Reply: a nil error to go
// ahead, or ErrRetryBudgetExhausted.
type RetryAsk struct {
	Host    string        // host[:port] of the request
	Method  string        // HTTP method, for the event
	Attempt int           // the attempt that would be sent: 2 for the first retry
	Reason  string        // why the last attempt failed (a retry reason, such as "status_503")
	Delay   time.Duration // the wait before that attempt
	Reply   chan<- error  // buffered, capacity ≥ 1
}

// CoolDown tells the supervisor that Host asked (with a 429 or 503 and Retry-After) that nothing be
// sent before Until. Every request to Host then waits in the engine until that time. Done, if not
// nil, is closed once the cool-down is in force.
type CoolDown struct {
	Host   string
	Until  time.Time // when requests may go again (the server's time, capped by the policy)
	At     time.Time // when the server asked to be called again
	Status int       // the status of the answer that asked
	Done   chan<- struct{}
}

// PruneCoolDowns is sent by the supervisor's own timer when a cool-down ends.
type PruneCoolDowns struct{}

// RequestPanicked reports that a request actor panicked and was stopped; its caller got
// ErrRequestPanicked. Or, when Telemetry is set, that the application's telemetry code (a sampler,
// a span processor) panicked on a request's span, and the request went on. The supervisor logs it.
type RequestPanicked struct {
	Method    string
	Host      string
	Value     string            // the panic value, printed
	Stack     []byte            // where it panicked
	Trace     trace.SpanContext // the request's span, so the log record names its trace; may be invalid
	Telemetry bool
}
