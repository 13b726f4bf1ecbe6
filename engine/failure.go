package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/redact"
)

// Failure describes one failed logical request, for the error handler: the request got an error,
// or its final answer (after retries and the resend after a 401) had a status of 400 or more.
type Failure struct {
	Method   string
	URL      string // without user info; query values replaced by "redacted"
	Status   int    // the final answer's status; 0 when there was none
	Attempts int    // physical sends, retries and the resend after a 401 included
	// Err is the typed error: an *APIError for an answer, else what the caller got (usable with
	// errors.Is: ErrSessionExpired, ErrClosed, ErrNetwork, ErrTimeout, ErrRetryLater, ...).
	Err error
}

// String describes the failure in one line: method, URL, attempts and the error.
func (f *Failure) String() string {
	return fmt.Sprintf("%s %s failed after %d attempt(s): %v", f.Method, f.URL, f.Attempts, f.Err)
}

// WithErrorHandler sets the one place where failures surface to the application, such as a toast:
// h is called exactly once per failed logical request (not per attempt), whether it went through the
// typed helpers or through Client() / Transport(); never for a request whose caller's context ended
// (a cancellation the caller asked for), never for a request that succeeded after retries. It runs on
// the goroutine of the request, before the caller gets the result: keep it short, or hand the
// failure on. A panic in h is logged and otherwise ignored. Default: none.
func WithErrorHandler(h func(ctx context.Context, f *Failure)) Option {
	return func(c *config) { c.onError = h }
}

// finished is the request path's Finished hook: it builds the typed error of a failed request once,
// and reports it, unless a typed helper is waiting to report it itself (with its own errors).
func (e *Engine) finished(req *http.Request, resp *http.Response, err error, o actors.Outcome) (*http.Response, error) {
	rep := actors.ReportFrom(req.Context())
	if rep == nil && e.onError == nil {
		return resp, err
	}
	status, ferr := 0, err
	if err == nil {
		ae := readAPIError(resp, e.maxErrors)
		if o.BudgetExhausted {
			ae.cause = ErrRetryBudgetExhausted
		}
		status, ferr = resp.StatusCode, ae
	}
	if rep != nil {
		rep.Failure = ferr
		return resp, err
	}
	e.fail(req.Context(), &Failure{Method: req.Method, URL: redact.URL(req.URL), Status: status, Attempts: o.Sends, Err: ferr})
	return resp, err
}

// fail calls the error handler, unless the caller's own context ended. A panic in it is logged.
func (e *Engine) fail(ctx context.Context, f *Failure) {
	if e.onError == nil || ctx.Err() != nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			e.logger.Error("error handler panicked", "panic", fmt.Sprint(p), "method", f.Method, "url", f.URL)
		}
	}()
	e.onError(ctx, f)
}

// readAPIError builds the *APIError of an error answer from at most limit bytes of its body, and
// puts those bytes back in front of the rest, so the caller still reads the whole body.
func readAPIError(resp *http.Response, limit int64) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	resp.Body = replayedBody{Reader: io.MultiReader(bytes.NewReader(body), resp.Body), Closer: resp.Body}
	return parseAPIError(resp, body)
}

type replayedBody struct {
	io.Reader
	io.Closer
}
