package actors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/messages"
)

// Requester is the request path: an http.RoundTripper that runs each logical request as a small
// actor of its own. The request actor owns its state (attempt, token generation, body) on the
// caller's goroutine, speaks to the token actor only in messages (NeedToken, TokenRejected; the
// answer may be a Pending to park on until the refresh ends), and reads the token actor's published
// snapshot on the hot path.
//
// Why not a protoactor actor per request: spawning and stopping one costs several microseconds and
// tens of allocations (see bench/), an order of magnitude more than the whole token-attaching cost
// of golang.org/x/oauth2; the caller's goroutine already exists and already waits, so it serves as
// the request actor's thread, with a one-slot reply channel as its mailbox.
//
// A Requester is safe for concurrent use.
type Requester struct {
	Base     http.RoundTripper // sends attempts
	Token    Credentials       // nil for a public client: never attaches a token
	Origins  []Origin          // only requests to these receive the token
	Inflight *Inflight         // tracks requests for Close
	// Secrets are attached to every request (and redirect hop) for Origins, and never elsewhere.
	Secrets []SecretHeader
	// Finished, if set, sees every logical request that failed (an error, or a final status ≥ 400)
	// before its caller does, with the number of physical sends it took; what it returns is what the
	// caller gets. It runs on the caller's goroutine.
	Finished func(req *http.Request, resp *http.Response, err error, o Outcome) (*http.Response, error)
	// Cache keeps GET answers with validators and revalidates them; nil: no caching.
	Cache *Caching
	// Supervisor applies the retry policy and keeps its shared state; nil: no retries (one attempt,
	// plus the resend after a 401).
	Supervisor *Supervisor
	// Tel traces and measures every logical request and every send; nil: no telemetry.
	Tel *telemetry.T
}

// RoundTrip runs one logical request through the stages of the request path, each in its own file
// and each visited once, in this order:
//
//   - check.go: refuse what net/http refuses (no URL, no Header, no host, a bad method);
//   - request.go (here): the request's context (inflight.go), its logical span, the Finished hook;
//   - retrying.go: the retry policy: cool-downs, Retry-After, backoff, the budget, Idempotency-Key;
//   - credentials.go: a token per attempt and the headers the hop may carry (headers.go,
//     origin.go), and the one resend after a 401 with the token that replaces the rejected one;
//   - caching.go: conditional GETs and the ETag cache;
//   - send.go: one physical send under the attempt timeout, traced, its errors typed.
func (r *Requester) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := check(req); err != nil {
		if req != nil {
			closeBody(req)
		}
		return nil, err
	}
	c, err := r.Inflight.begin(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	defer r.Inflight.returned()
	now := time.Now()
	st := attemptState{start: now, auth: &c.auth}
	ctx := r.Tel.StartLogical(c.ctx(), req, now, &st.tel)
	r.telemetryFault(ctx, req, &st)
	resp, err := r.logical(ctx, req, &st)
	c.release = st.release // the caller's answer is read under it: released when the call ends
	if err == nil {
		// The caller's request, not the copy that was sent: that one carries the engine's
		// credentials, and redirect hops must find the chain as the caller made it.
		resp.Request = req
	}
	if failed := err != nil || resp.StatusCode >= 400; failed || st.sends > 1 {
		if rep := ReportFrom(ctx); rep != nil {
			rep.Attempts = st.sends
		}
		if failed && r.Finished != nil {
			resp, err = r.finish(req, &st, resp, err, Outcome{Sends: st.sends, BudgetExhausted: st.exhausted,
				Secrets: r.sentSecrets(req, &st)})
		}
	}
	if err != nil {
		if c.closedByEngine() && !errors.Is(err, messages.ErrClosed) { // (before end: it may forget)
			err = fmt.Errorf("%w (%w)", messages.ErrClosed, err)
		}
		c.end()
		st.tel.End(ctx, st.keyed(req), nil, err, st.sends, time.Now())
		r.telemetryFault(ctx, req, &st)
		return nil, err
	}
	end := st.lastEnd // an answer that went through no hook ends when its send did
	if st.tel.Clocked() && (resp.StatusCode >= 400 || end.IsZero()) {
		end = time.Now()
	}
	st.tel.End(ctx, st.keyed(req), resp, nil, st.sends, end)
	r.telemetryFault(ctx, req, &st)
	if resp.Body == nil {
		c.end()
		return resp, nil
	}
	resp.Body = c.wrap(resp)
	return resp, nil
}

// telemetryFault reports to the supervisor's log a panic of the application's telemetry code (a
// sampler or span processor) that the logical request's span recovered. It does not fail the
// request, which goes on untraced, or gets its answer.
func (r *Requester) telemetryFault(ctx context.Context, req *http.Request, st *attemptState) {
	if f := st.tel.Fault(); f != nil && r.Supervisor != nil {
		r.Supervisor.reportTelemetryFault(messages.RequestPanicked{Method: req.Method, Host: req.URL.Host, Telemetry: true,
			Value: scrubPanic(fmt.Sprint(f.Value), r.sentSecrets(req, st)), Stack: f.Stack, Trace: trace.SpanContextFromContext(ctx)})
	}
}

// attemptState is what one logical request remembers across its attempts.
type attemptState struct {
	sends     int            // physical sends so far, 401 resends included
	replayed  bool           // the one resend after a 401 has been used
	open      *http.Response // an answer being shown to the user's Decide, closed if it panics
	exhausted bool           // the retry budget refused a retry: the last answer is the answer
	noToken   bool           // the attempt failed for want of a token (the refresh applied the policy already)
	token     string         // the Authorization value last sent, cut out of a panic's text
	rejected  string         // the Authorization value a 401 rejected before the resend, if any
	auth      *[1]string     // the first send's Authorization value slice, until used (authValues)

	start   time.Time         // when the logical request began
	waited  bool              // the request waited out a cool-down: start is no longer now
	lastEnd time.Time         // when the last send's answer (or error) came back, if metrics need it
	sent    *http.Request     // the request as sent (with the engine's Idempotency-Key), if not req
	release func()            // ends the context of the send whose answer may be the caller's
	tel     telemetry.Logical // the logical request's span and measurements
}

// clock is the time for a decision about to be made: the request's start while it has neither sent
// nor waited (a few microseconds ago: one clock reading serves the whole common case), else a new
// reading.
func (st *attemptState) clock() time.Time {
	if st.sends == 0 && !st.waited {
		return st.start
	}
	return time.Now()
}

// keyed is the request as its attempts were sent: with the Idempotency-Key the engine added.
func (st *attemptState) keyed(req *http.Request) *http.Request {
	if st.sent != nil {
		return st.sent
	}
	return req
}

// Outcome is what the request path knows of a finished logical request beyond its answer.
type Outcome struct {
	Sends           int  // physical sends, 401 resends included
	BudgetExhausted bool // the retry budget refused a retry that was due
	// Secrets are the credentials this request sent (each Authorization value, with and without
	// its scheme, the secret headers, the caller's own credential headers): an answer that echoes
	// them must be scrubbed of them, even once the token actor has dropped a rejected token.
	Secrets []string
}

// finish runs the Finished hook, turning a panic in it into ErrRequestPanicked.
func (r *Requester) finish(req *http.Request, st *attemptState, resp *http.Response, err error, o Outcome) (_ *http.Response, ferr error) {
	defer func() {
		if p := recover(); p != nil {
			if resp != nil {
				discard(resp)
			}
			ferr = r.panicked(req.Context(), req, st, p)
		}
	}()
	resp, err = r.Finished(req, resp, err, o)
	if err != nil && resp != nil {
		discard(resp)
		resp = nil
	}
	return resp, err
}

// logical runs one logical request. A panic anywhere in it (a user hook, the transport, a bug of
// ours) stops it: the caller gets ErrRequestPanicked and the supervisor logs the panic once.
func (r *Requester) logical(ctx context.Context, req *http.Request, st *attemptState) (resp *http.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			if st.open != nil {
				discard(st.open)
			}
			closeBody(req)
			resp, err = nil, r.panicked(ctx, req, st, p)
		}
	}()
	if r.Supervisor == nil {
		return r.attempt(ctx, req, req.Body, st)
	}
	return r.withRetries(ctx, req, st)
}
