package engine

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/redact"
)

// Failure describes one failed logical request, for the error handler: the request got an error,
// or its final answer (after retries and the resend after a 401) had a status of 400 or more.
type Failure struct {
	Family   string // the key of the family that sent the request (Engine.Family); "" for the default family
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

// finished is the request path's Finished hook for the default family (f nil) and for family f: it
// builds the typed error of a failed request once, and reports it, unless a typed helper is waiting
// to report it itself (with its own errors).
func (e *Engine) finished(f *Family, req *http.Request, resp *http.Response, err error, o actors.Outcome) (*http.Response, error) {
	rep := actors.ReportFrom(req.Context())
	if rep == nil && e.onError == nil {
		return resp, err
	}
	status, ferr := 0, err
	if err == nil {
		ae := e.readAPIError(req.Context(), resp, slices.Concat(o.Secrets, familySecrets(f)))
		if o.BudgetExhausted {
			ae.cause = ErrRetryBudgetExhausted
		}
		status, ferr = resp.StatusCode, ae
	}
	if rep != nil {
		rep.Failure = ferr
		return resp, err
	}
	e.fail(req.Context(), &Failure{Family: familyKey(f), Method: req.Method, URL: redact.URL(req.URL), Status: status, Attempts: o.Sends, Err: ferr})
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

// readAPIError builds the *APIError of an error answer from the first bytes of its body (at most
// WithMaxErrorBodyBytes, and only what arrives promptly: see readErrorBody), scrubbed of the
// engine's secrets and of sent, the credentials this request sent (the token it was refused with is
// no longer the current one). The caller still reads the whole body from resp.Body.
func (e *Engine) readAPIError(ctx context.Context, resp *http.Response, sent []string) *APIError {
	body, rest := readErrorBody(ctx, resp.Body, e.maxErrors)
	resp.Body = rest
	return parseAPIError(resp, body, append(e.knownSecrets(), sent...)...)
}

// familyKey is f's key, "" for the default family (nil).
func familyKey(f *Family) string {
	if f == nil {
		return ""
	}
	return f.key
}

// familySecrets are the values of f's current token an API may echo (none for the default family,
// whose token knownSecrets has).
func familySecrets(f *Family) []string {
	if f == nil {
		return nil
	}
	if h := f.header(); h != "" {
		return []string{h, strings.TrimPrefix(h, "Bearer ")}
	}
	return nil
}

// knownSecrets are the values an API may echo that must not reach an error: the Authorization
// value the current token is sent with, the token alone, and every WithSecretHeader value. (The API
// never sees the refresh token; a token replaced while the request ran is not known here.)
func (e *Engine) knownSecrets() []string {
	secrets := make([]string, 0, 2+len(e.requester.Secrets))
	if e.token != nil {
		if h := e.token.Header(); h != "" {
			secrets = append(secrets, h, strings.TrimPrefix(h, "Bearer "))
		}
	}
	for _, h := range e.requester.Secrets {
		secrets = append(secrets, h.Value)
	}
	return secrets
}
