package messages

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Sentinel errors shared by the actors and re-exported by package engine, so that errors.Is works
// across the package boundary with a single value.
var (
	// ErrSessionExpired: the credentials can no longer be refreshed (the token endpoint refused the
	// refresh token, or there is none). Every later request fails fast with it until new tokens are set.
	ErrSessionExpired = errors.New("engine: session expired")
	// ErrClosed: the engine was closed before or while the request ran.
	ErrClosed = errors.New("engine: closed")
	// ErrRefreshFailed: a refresh failed for a reason that may pass (the token endpoint answered 5xx or
	// 429, timed out, or could not be reached). The credentials are kept and the next request tries again.
	ErrRefreshFailed = errors.New("engine: token refresh failed")
	// ErrSaveFailed: the TokenStore could not save the newest credentials, even after retries within
	// the refresh timeout. They are used from memory all the same (a rotated refresh token is spent:
	// the old pair is worthless), and the engine's Health reports the error until a save succeeds.
	ErrSaveFailed = errors.New("engine: saving the tokens failed")
)

// Sentinel errors of the retry policy.
var (
	// ErrRetryBudgetExhausted: a retry was due but retries to this host already take their whole share
	// of the traffic. The error that carries it also wraps the last attempt's error.
	ErrRetryBudgetExhausted = errors.New("engine: retry budget exhausted")
	// ErrRetryLater: the server (or a cool-down it asked for) wants the request retried later than the
	// request's deadline allows. It is carried by a *RetryLaterError that says when.
	ErrRetryLater = errors.New("engine: the server asks to retry later than the deadline allows")
	// ErrRequestPanicked: the request path panicked (a user hook, the transport, or a bug of ours). The
	// panic value and stack go to the engine's logger, once; the request is not resent.
	ErrRequestPanicked = errors.New("engine: request panicked")
)

// RetryLaterError says when a request could be tried again: a Retry-After (or the host's cool-down
// that one set) ends after the request's deadline, so the engine failed it at once instead of waiting
// in vain. errors.Is finds ErrRetryLater and context.DeadlineExceeded in it.
type RetryLaterError struct {
	Host   string    // host[:port] that asked for the wait
	Status int       // the status that carried the Retry-After; 0 when a cool-down held the request
	At     time.Time // when the server accepts requests again
}

// Error says which host asked to come back, and when.
func (e *RetryLaterError) Error() string {
	b := []byte("engine: ")
	b = append(b, e.Host...)
	if e.Status != 0 {
		b = append(b, " answered "...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
		b = append(b, " and"...)
	} else {
		b = append(b, " is cooling down and"...)
	}
	b = append(b, " asks to retry at "...)
	b = e.At.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, ", after the request's deadline"...)
	return string(b)
}

// Unwrap makes errors.Is(err, ErrRetryLater) and errors.Is(err, context.DeadlineExceeded) true.
func (e *RetryLaterError) Unwrap() []error { return []error{ErrRetryLater, context.DeadlineExceeded} }

// ErrAttemptTimeout: one attempt had no response headers within the retry policy's attempt timeout.
// The request is retried when that is safe; if it is not, or attempts run out, the caller gets it.
var ErrAttemptTimeout = errors.New("engine: attempt timed out")

// Sentinels of the kind of a failure without an answer.
var (
	// ErrNetwork: the request got no (whole) answer: the connection could not be made, was reset or
	// closed early, TLS failed, or the network timed out. errors.As finds the underlying error too.
	ErrNetwork = errors.New("engine: network error")
	// ErrTimeout: an attempt or the network timed out (ErrAttemptTimeout, a dial, TLS or
	// response-header timeout). The caller's own deadline is context.DeadlineExceeded.
	ErrTimeout = errors.New("engine: timeout")
)

// RotatedRefresh is implemented by a refresh error that carries a new refresh token: the token
// endpoint rotated (spent the refresh token it was sent) but its answer could not be used. The token
// actor saves and keeps the rotated token and retries with it, never with the spent one. A
// RefreshFunc may return such an error too. The token must never appear in the error's text.
type RotatedRefresh interface {
	error
	RotatedRefreshToken() string
}
