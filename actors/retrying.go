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
	start := time.Now()
	s.budget(host).Request(start)
	req = withIdempotencyKey(req, p)
	body := req.Body
	for retries := 0; ; retries++ {
		if err := s.waitCoolDown(ctx, host); err != nil {
			closeReader(body)
			return nil, err
		}
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
		st.open = resp
		reason, again := p.Decide(req, resp, err)
		now := time.Now()
		wait, fromServer, at := time.Duration(0), false, time.Time{}
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
				// The server asked for a pause: it holds every request to this host, not only ours,
				// for as long as the policy lets a server hold anyone.
				wait, fromServer, at = d, true, now.Add(d)
				if hold := min(d, p.MaxRetryAfter); hold > 0 {
					s.coolDown(ctx, host, now.Add(hold), at, resp.StatusCode)
				}
			}
		}
		if !again || retries >= p.MaxRetries || !replayable(req) {
			st.open = nil
			return resp, err
		}
		if fromServer {
			if dl, ok := ctx.Deadline(); ok && at.After(dl) {
				// Waiting would outlive the caller: say when to come back, at once.
				discard(resp)
				st.open = nil
				return nil, &messages.RetryLaterError{Host: host, Status: resp.StatusCode, At: at}
			}
			if wait > p.MaxRetryAfter { // longer than a server may hold a caller: the answer stands
				st.open = nil
				return resp, err
			}
		} else {
			wait = retry.Backoff(retries+1, p.BaseDelay, p.MaxDelay, nil)
			if dl, ok := ctx.Deadline(); ok && now.Add(wait).After(dl) {
				// Our own backoff would outlive the caller: the last answer is the answer.
				st.open = nil
				return resp, err
			}
		}
		if now.Add(wait).Sub(start) > p.MaxElapsed {
			st.open = nil
			return resp, err
		}
		ask := messages.RetryAsk{Host: host, Method: req.Method, Attempt: st.sends + 1, Reason: reason, Delay: wait}
		if aerr := s.askRetry(ctx, ask); aerr != nil {
			st.open = nil
			if !errors.Is(aerr, messages.ErrRetryBudgetExhausted) {
				if resp != nil {
					discard(resp)
				}
				return nil, aerr
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %w", messages.ErrRetryBudgetExhausted, err)
			}
			st.exhausted = true
			if rep := ReportFrom(ctx); rep != nil {
				rep.BudgetExhausted = true
			}
			return resp, nil
		}
		if resp != nil {
			discard(resp)
		}
		st.open = nil
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		var rerr error
		if body, rerr = rewind(req); rerr != nil {
			return nil, fmt.Errorf("engine: replaying the request body: %w", rerr)
		}
	}
}

// waitCoolDown holds a request while its host cools down. A cool-down that outlasts ctx's deadline
// fails at once with a *RetryLaterError.
func (s *Supervisor) waitCoolDown(ctx context.Context, host string) error {
	for s.cool.Load() != nil {
		cd, ok := s.coolingUntil(host, time.Now())
		if !ok {
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && cd.until.After(dl) {
			return &messages.RetryLaterError{Host: host, Status: cd.status, At: cd.at}
		}
		if err := sleep(ctx, time.Until(cd.until)); err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d, or returns early with why ctx ended.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// withIdempotencyKey gives a POST or PATCH without an Idempotency-Key one, in a copy of req with its
// own header map; every attempt of the logical request then carries the same key.
func withIdempotencyKey(req *http.Request, p *RetryPolicy) *http.Request {
	if !p.IdempotencyKeys || (req.Method != http.MethodPost && req.Method != http.MethodPatch) ||
		req.Header.Get("Idempotency-Key") != "" {
		return req
	}
	r2 := *req
	r2.Header = req.Header.Clone()
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	r2.Header.Set("Idempotency-Key", p.NewKey())
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
	Attempts        int  // physical sends, 401 resends included
	BudgetExhausted bool // the last answer is returned because the retry budget refused a retry
	// Failure is what the Finished hook made of a failed request (an *APIError for a status), so a
	// typed helper reports the same value rather than parsing the answer again.
	Failure error
}

type reportKey struct{}

// WithReport returns ctx carrying rep for the request path to fill.
func WithReport(ctx context.Context, rep *Report) context.Context {
	return context.WithValue(ctx, reportKey{}, rep)
}

// ReportFrom returns the Report in ctx, or nil.
func ReportFrom(ctx context.Context) *Report {
	rep, _ := ctx.Value(reportKey{}).(*Report)
	return rep
}
