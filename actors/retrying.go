package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/httpx"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// withRetries runs a logical request under the retry policy: wait out the host's cool-down, make an
// attempt, and when its outcome is retryable (and the request safe to repeat) wait the server's
// Retry-After or a jittered backoff, with the supervisor's leave, and try again. Every wait ends at
// once when ctx ends (the caller gave up, or Close).
//
// What the caller gets when retrying stops is the last attempt's own outcome: a response as net/http
// would return it, or its error, wrapped with ErrRetryBudgetExhausted when the budget refused.
func (r *Requester) withRetries(ctx context.Context, req *http.Request, st *attemptState) (*http.Response, error) {
	s := r.Supervisor
	p := &s.policy
	host := strings.ToLower(req.URL.Host)
	s.budget(host).Request(st.start)
	req = withIdempotencyKey(req, p)
	st.sent = req
	body := req.Body
	for retries := 0; ; retries++ {
		waited, err := s.waitCoolDown(ctx, host)
		if waited > 0 {
			st.waited = true
			st.tel.CoolDown(ctx, host, waited)
		}
		if err != nil {
			closeReader(body)
			return nil, err
		}
		st.lastEnd = time.Time{}
		resp, err := r.attempt(ctx, req, body, st)
		if ctx.Err() != nil {
			if err == nil { // an answer raced the end of ctx: the caller no longer wants it
				discard(resp)
				err = ctxErr(ctx)
			}
			return nil, err
		}
		if st.noToken {
			// No token to send with: the refresh already applied the policy to its own failures;
			// retrying here would multiply its retries and charge them to the API's host.
			return nil, err
		}
		st.open = resp // Decide is the user's: if it panics, this answer is still closed
		reason, again := p.Decide(req, resp, err)
		st.open = nil
		now := st.lastEnd // the clock read when this attempt's answer came back, if metrics needed it
		pa := s.retryAfter(ctx, host, resp, &now)
		if !again || retries >= p.MaxRetries || !replayable(req) {
			return resp, err // (the common case reads no clock here)
		}
		wait, out, outErr, stop := r.nextRetry(ctx, st, host, retries, pa, resp, err, now)
		if stop {
			return out, outErr
		}
		ask := messages.RetryAsk{Host: host, Method: req.Method, Attempt: st.sends + 1, Reason: reason, Delay: wait}
		if out, outErr, stop := r.askLeave(ctx, st, ask, resp, err); stop {
			return out, outErr
		}
		st.tel.RetryScheduled(ctx, host, reason, wait, pa.fromServer, st.sends)
		if resp != nil {
			discard(resp)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		var rerr error
		if body, rerr = rewind(req); rerr != nil {
			return nil, fmt.Errorf("engine: replaying the request body: %w", rerr)
		}
	}
}

// pause is what an answer's Retry-After asked for: the wait, whether there was one, and when the
// server asked to be called again.
type pause struct {
	wait       time.Duration
	fromServer bool
	at         time.Time
}

// retryAfter reads the Retry-After of a 429 or 503 answer and makes it the host's cool-down. It reads
// the clock into *now if it was not read yet.
func (s *Supervisor) retryAfter(ctx context.Context, host string, resp *http.Response, now *time.Time) pause {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return pause{}
	}
	if now.IsZero() {
		*now = time.Now()
	}
	var p pause
	if p.wait, p.fromServer = retry.ParseRetryAfter(resp.Header.Get("Retry-After"), *now); p.fromServer {
		p.at = s.serverPause(ctx, host, p.wait, resp.StatusCode, *now)
	}
	return p
}

// nextRetry is the wait before the next attempt. When there is none (the server's wait or our own
// backoff would outlive the caller, or the policy will not wait that long), stop is true and out,
// outErr are what the caller gets.
func (r *Requester) nextRetry(ctx context.Context, st *attemptState, host string, retries int, pa pause, resp *http.Response, err error, now time.Time) (wait time.Duration, out *http.Response, outErr error, stop bool) {
	if now.IsZero() {
		now = time.Now()
	}
	dl, hasDeadline := ctx.Deadline()
	if pa.fromServer && hasDeadline && pa.at.After(dl) {
		// Waiting would outlive the caller: say when to come back, at once.
		discard(resp)
		return 0, nil, &messages.RetryLaterError{Host: host, Status: resp.StatusCode, At: pa.at}, true
	}
	wait, ok := r.Supervisor.policy.nextWait(retries+1, pa.wait, pa.fromServer, st.start, now)
	if !ok || (hasDeadline && now.Add(wait).After(dl)) {
		// The policy will not wait that long, or our own backoff would outlive the caller: the last
		// answer is the answer.
		return 0, resp, err, true
	}
	return wait, nil, nil, false
}

// askLeave asks the supervisor for a retry. When it refuses, stop is true and out, outErr are what
// the caller gets: the last answer (marked as exhausting the budget), or the refusal.
func (r *Requester) askLeave(ctx context.Context, st *attemptState, ask messages.RetryAsk, resp *http.Response, err error) (out *http.Response, outErr error, stop bool) {
	aerr := r.Supervisor.askRetry(ctx, ask)
	if aerr == nil {
		return nil, nil, false
	}
	if !errors.Is(aerr, messages.ErrRetryBudgetExhausted) {
		if resp != nil {
			discard(resp)
		}
		return nil, aerr, true
	}
	st.tel.BudgetExhausted(ctx, ask.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", messages.ErrRetryBudgetExhausted, err), true
	}
	st.exhausted = true
	return resp, nil, true
}

// serverPause makes a Retry-After of d from host (on an answer of status) the host's cool-down,
// cut to MaxRetryAfter, and returns when the server asked to be called again.
func (s *Supervisor) serverPause(ctx context.Context, host string, d time.Duration, status int, now time.Time) time.Time {
	at := now.Add(d)
	if hold := min(d, s.policy.MaxRetryAfter); hold > 0 {
		s.coolDown(ctx, host, now.Add(hold), at, status)
	}
	return at
}

// nextWait is the wait before retry n (1 for the first): the server's Retry-After when fromServer,
// else the jittered backoff. ok is false when the policy will not wait: a Retry-After longer than
// MaxRetryAfter (no server holds a caller longer), or a wait ending more than MaxElapsed after start.
func (p *RetryPolicy) nextWait(n int, server time.Duration, fromServer bool, start, now time.Time) (time.Duration, bool) {
	wait := server
	if !fromServer {
		wait = retry.Backoff(n, p.BaseDelay, p.MaxDelay, nil)
	} else if server > p.MaxRetryAfter {
		return 0, false
	}
	return wait, now.Add(wait).Sub(start) <= p.MaxElapsed
}

// waitCoolDown holds a request while its host cools down, and says how long it held it. A
// cool-down that outlasts ctx's deadline fails at once with a *RetryLaterError.
func (s *Supervisor) waitCoolDown(ctx context.Context, host string) (time.Duration, error) {
	var waited time.Duration
	for s.cool.Load() != nil {
		now := time.Now()
		cd, ok := s.coolingUntil(host, now)
		if !ok {
			break
		}
		if dl, ok := ctx.Deadline(); ok && cd.until.After(dl) {
			return waited, &messages.RetryLaterError{Host: host, Status: cd.status, At: cd.at}
		}
		err := sleep(ctx, cd.until.Sub(now))
		waited += time.Since(now)
		if err != nil {
			return waited, err
		}
	}
	return waited, nil
}

// sleep waits d, or returns early with why ctx ended.
func sleep(ctx context.Context, d time.Duration) error {
	if !retry.Sleep(ctx, d) {
		return ctxErr(ctx)
	}
	return nil
}

// withIdempotencyKey gives a POST or PATCH without an Idempotency-Key one, in a copy of req with its
// own header map; every attempt of the logical request then carries the same key. A request whose
// context says WithoutIdempotencyKey gets none.
func withIdempotencyKey(req *http.Request, p *RetryPolicy) *http.Request {
	if !p.IdempotencyKeys || (req.Method != http.MethodPost && req.Method != http.MethodPatch) ||
		httpx.HasIdempotencyKey(req.Header) || req.Context().Value(noKeyKey{}) != nil {
		return req
	}
	r2 := *req
	r2.Header = req.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	r2.Header.Set(httpx.IdempotencyKey, p.NewKey())
	return &r2
}

// NewIdempotencyKey returns a random (version 4) UUID, the form most APIs document for
// Idempotency-Key.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// Report is filled, when a caller put one in the request's context with WithReport, with what the
// request path knows of a logical request that the response itself cannot say.
type Report struct {
	Attempts int // physical sends, 401 resends included
	// Failure is what the Finished hook made of a failed request (an *APIError for a status), so a
	// typed helper reports the same value rather than parsing the answer again.
	Failure error
}

type reportKey struct{}

type noKeyKey struct{}

// WithoutIdempotencyKey returns ctx marking the requests made with it as ones the engine must not
// give an Idempotency-Key (an API that refuses unknown headers, or a POST the caller wants sent at
// most once). Such a POST or PATCH is then not retried after it may have reached the server.
func WithoutIdempotencyKey(ctx context.Context) context.Context {
	return context.WithValue(ctx, noKeyKey{}, true)
}

// WithReport returns ctx carrying rep for the request path to fill.
func WithReport(ctx context.Context, rep *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, rep)
}

// ReportFrom returns the Report in ctx, or nil.
func ReportFrom(ctx context.Context) *Report {
	rep, _ := ctx.Value(reportKey{}).(*Report)
	return rep
}
