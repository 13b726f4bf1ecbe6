package engine

import (
	"net/http"
	"time"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// Defaults of the retry policy: each applies when its RetryPolicy field is zero.
const (
	DefaultMaxRetries      = 3                      // MaxRetries, also WithMaxRetries
	DefaultBaseDelay       = 100 * time.Millisecond // BaseDelay
	DefaultMaxDelay        = 10 * time.Second       // MaxDelay
	DefaultMaxElapsed      = time.Minute            // MaxElapsed
	DefaultMaxRetryAfter   = 30 * time.Second       // MaxRetryAfter
	DefaultBudgetRatio     = 0.2                    // BudgetRatio
	DefaultBudgetPerSecond = 10                     // BudgetPerSecond
	DefaultBudgetWindow    = 10 * time.Second       // BudgetWindow
)

// RetryPolicy says when and how the engine repeats a failed request. The zero value is the default
// policy: every zero field takes the default written beside it. A negative MaxRetries never retries;
// a negative BudgetRatio or BudgetPerSecond turns that part of the budget off. A negative duration, a NaN BudgetRatio or a MaxDelay below
// BaseDelay is a *ConfigError from New. It is a value: give it to WithRetryPolicy; the engine keeps
// its own copy.
//
// What is retried (the default Decide): 429, 502, 503 and 504 answers (500 with Retry500), a
// connection refused, reset or closed before any answer, and a timeout, but only for requests that
// are safe to repeat: GET, HEAD, PUT, DELETE, OPTIONS, TRACE, and POST or PATCH carrying an
// Idempotency-Key (the engine adds one unless NoIdempotencyKeys). A refused connection is retried
// for every method, since nothing was sent. A 409 to a request with an Idempotency-Key (the server
// is still processing the first attempt) is retried too; no other 4xx is.
//
// How long it waits: the server's Retry-After (delta-seconds or HTTP-date) when a 429 or 503 has
// one; otherwise exponential backoff with full jitter, a random wait between 0 and
// min(MaxDelay, BaseDelay·2^(n-1)) before retry n. A Retry-After also holds every other request to
// the same host until it has passed (at most MaxRetryAfter). No server can park a caller for longer
// than MaxRetryAfter: a longer Retry-After is not waited for, and the answer (with its RetryAfter) is
// the caller's at once. A wait that would end after the request's context deadline is not started:
// a Retry-After gives a *RetryLaterError at once, a computed backoff returns the last answer at once.
//
// How much: at most MaxRetries retries per logical request, none starting later than MaxElapsed
// after it began, and per host at most BudgetRatio of the logical requests of the last BudgetWindow
// plus BudgetPerSecond retries a second; past the budget the last answer is returned (an error
// wraps ErrRetryBudgetExhausted; the typed helpers' *APIError does too).
type RetryPolicy struct {
	MaxRetries     int           // default DefaultMaxRetries (3); negative: never retry
	BaseDelay      time.Duration // default DefaultBaseDelay (100 ms)
	MaxDelay       time.Duration // default DefaultMaxDelay (10 s)
	MaxElapsed     time.Duration // default DefaultMaxElapsed (1 min)
	MaxRetryAfter  time.Duration // longest Retry-After waited for; default DefaultMaxRetryAfter (30 s)
	AttemptTimeout time.Duration // time for one attempt's response headers; default none (0)

	Retry500 bool // also retry 500 Internal Server Error (default: no)

	BudgetRatio     float64       // default DefaultBudgetRatio (0.2); negative: no budget
	BudgetPerSecond int           // default DefaultBudgetPerSecond (10); negative: no floor
	BudgetWindow    time.Duration // default DefaultBudgetWindow (10 s)

	// NoIdempotencyKeys stops the engine from adding an Idempotency-Key to POST and PATCH requests;
	// such requests are then never retried unless the caller sets the header. Default: keys are added.
	// WithoutIdempotencyKey turns them off for one request.
	NoIdempotencyKeys bool
	// NewIdempotencyKey makes a key. Default: a random version 4 UUID.
	NewIdempotencyKey func() string

	// Decide replaces the retry decision. Exactly one of resp and err is non-nil; return a short,
	// low-cardinality reason (it appears in events) and whether to retry. The engine still applies
	// the limits above and never repeats a request whose body cannot be replayed. A panic in Decide
	// fails the request with ErrRequestPanicked. Default: DefaultRetryDecision(Retry500).
	Decide func(req *http.Request, resp *http.Response, err error) (reason string, retry bool)
}

// DefaultRetryDecision is the decision RetryPolicy describes, for a custom Decide to fall back on.
// With retry500 a 500 answer is retried too.
func DefaultRetryDecision(retry500 bool) func(req *http.Request, resp *http.Response, err error) (reason string, retry bool) {
	return retry.Decider(retry500)
}

// WithRetryPolicy sets the retry policy; its zero fields take their defaults. Giving it together with
// WithMaxRetries is a *ConfigError: set MaxRetries in the policy. Default: RetryPolicy{} (every
// default described there).
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *config) { c.retry, c.retryGiven = p, true }
}

// WithMaxRetries sets how many times a failed request may be retried, the rest of the policy keeping
// its defaults: 0 (or a negative n) never retries. Giving it together with WithRetryPolicy is a
// *ConfigError. Default: DefaultMaxRetries (3).
func WithMaxRetries(n int) Option { return func(c *config) { c.maxRetries = &n } }

// retryPolicy resolves WithRetryPolicy and WithMaxRetries into the policy the supervisor runs.
func (c *config) retryPolicy() (actors.RetryPolicy, error) {
	if c.maxRetries != nil && c.retryGiven {
		return actors.RetryPolicy{}, configErr("WithMaxRetries", "given with WithRetryPolicy, which it would contradict; set RetryPolicy.MaxRetries instead")
	}
	p := c.retry
	if c.maxRetries != nil {
		p.MaxRetries = *c.maxRetries
		if p.MaxRetries == 0 {
			p.MaxRetries = -1 // the option means what it says; in the struct, zero is the default
		}
	}
	return p.built()
}

// built fills in the defaults and checks the values; it says which field is wrong.
func (p RetryPolicy) built() (actors.RetryPolicy, error) {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"BaseDelay", p.BaseDelay}, {"MaxDelay", p.MaxDelay}, {"MaxElapsed", p.MaxElapsed},
		{"MaxRetryAfter", p.MaxRetryAfter}, {"AttemptTimeout", p.AttemptTimeout}, {"BudgetWindow", p.BudgetWindow},
	} {
		if f.d < 0 {
			return actors.RetryPolicy{}, configErr("WithRetryPolicy", "%s is negative (%v)", f.name, f.d)
		}
	}
	if p.BudgetRatio != p.BudgetRatio { // NaN
		return actors.RetryPolicy{}, configErr("WithRetryPolicy", "BudgetRatio is NaN")
	}
	b := actors.RetryPolicy{
		MaxRetries:      orDefault(p.MaxRetries, DefaultMaxRetries),
		BaseDelay:       orDefault(p.BaseDelay, DefaultBaseDelay),
		MaxDelay:        orDefault(p.MaxDelay, DefaultMaxDelay),
		MaxElapsed:      orDefault(p.MaxElapsed, DefaultMaxElapsed),
		MaxRetryAfter:   orDefault(p.MaxRetryAfter, DefaultMaxRetryAfter),
		AttemptTimeout:  p.AttemptTimeout,
		BudgetRatio:     orDefault(p.BudgetRatio, DefaultBudgetRatio),
		BudgetPerSecond: orDefault(p.BudgetPerSecond, DefaultBudgetPerSecond),
		BudgetWindow:    orDefault(p.BudgetWindow, DefaultBudgetWindow),
		IdempotencyKeys: !p.NoIdempotencyKeys,
		NewKey:          p.NewIdempotencyKey,
		Decide:          p.Decide,
	}
	if b.MaxRetries < 0 {
		b.MaxRetries = 0
	}
	if b.BudgetPerSecond < 0 {
		b.BudgetPerSecond = 0
	}
	if b.MaxDelay < b.BaseDelay {
		return actors.RetryPolicy{}, configErr("WithRetryPolicy", "MaxDelay (%v) is below BaseDelay (%v)", b.MaxDelay, b.BaseDelay)
	}
	if b.NewKey == nil {
		b.NewKey = actors.NewIdempotencyKey
	}
	if b.Decide == nil {
		b.Decide = retry.Decider(p.Retry500)
	}
	return b, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// RetryLaterError says when to come back: the server's Retry-After (or the cool-down it set for its
// host) ends after the request's deadline, so the engine failed the request at once rather than
// wait in vain. errors.Is finds ErrRetryLater and context.DeadlineExceeded in it. Its fields (an
// alias hides them from go doc):
//
//	Host   string    // host[:port] that asked for the wait
//	Status int       // the status that carried the Retry-After; 0 when a cool-down held the request
//	At     time.Time // when the server accepts requests again
type RetryLaterError = messages.RetryLaterError
