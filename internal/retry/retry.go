// Package retry holds the pure, side-effect-free pieces of the engine's retry policy: whether a
// failed attempt may be repeated and why (Decider, Idempotent, NetworkReason), how long a server
// asked us to wait (ParseRetryAfter), how long to back off otherwise (Backoff), and how many retries
// a host may take (Budget). The supervisor actor and the request path call them; nothing here sleeps,
// sends or logs.
package retry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/resilientclient/resilient/internal/httpx"
)

// Retry reasons: short, low-cardinality values that say why an attempt is retried. They appear in
// events and metric labels.
const (
	// ReasonTooManyRequests is a 429 Too Many Requests answer.
	ReasonTooManyRequests = "status_429"
	// ReasonServerError is a 500 Internal Server Error answer (retried only when asked for).
	ReasonServerError = "status_500"
	// ReasonBadGateway is a 502 Bad Gateway answer.
	ReasonBadGateway = "status_502"
	// ReasonUnavailable is a 503 Service Unavailable answer.
	ReasonUnavailable = "status_503"
	// ReasonGatewayTimeout is a 504 Gateway Timeout answer.
	ReasonGatewayTimeout = "status_504"
	// ReasonInProgress is a 409 Conflict to a request carrying an Idempotency-Key: the server is still
	// processing an earlier attempt with the same key (draft-ietf-httpapi-idempotency-key-header).
	ReasonInProgress = "in_progress"
	// ReasonConnRefused is a refused connection: nothing was sent.
	ReasonConnRefused = "connection_refused"
	// ReasonConnReset is a connection reset or aborted by the peer, or a broken pipe.
	ReasonConnReset = "connection_reset"
	// ReasonEOF is a connection closed before a whole answer arrived.
	ReasonEOF = "eof"
	// ReasonTimeout is a network or transport timeout (a net.Error whose Timeout is true).
	ReasonTimeout = "timeout"
)

// Idempotent reports whether req may be sent again without changing the outcome: its method is
// idempotent by RFC 9110 §9.2.2 (GET, HEAD, PUT, DELETE, OPTIONS, TRACE; an empty method means GET),
// or it carries a non-empty Idempotency-Key header (any spelling of its name: httpx.HasIdempotencyKey,
// the rule the engine uses to decide whether to add one). Methods are case-sensitive. A nil req is not.
func Idempotent(req *http.Request) bool {
	if req == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	return hasIdempotencyKey(req)
}

// hasIdempotencyKey reports whether req carries a non-empty Idempotency-Key header.
func hasIdempotencyKey(req *http.Request) bool {
	return req != nil && httpx.HasIdempotencyKey(req.Header)
}

// NetworkReason classifies a transport error. ok says it is one that a new attempt may not meet:
// a refused connection, a reset, aborted or broken connection, an early EOF, or a timeout (a
// net.Error whose Timeout is true). anyMethod says nothing was sent (the connection was refused), so
// even a request that is not idempotent may be repeated. It does not look at contexts: a caller that
// must tell its own cancellation apart checks that first (context.DeadlineExceeded is itself a
// timeout net.Error).
func NetworkReason(err error) (reason string, anyMethod bool, ok bool) {
	var ne net.Error
	switch {
	case err == nil:
		return "", false, false
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnRefused, true, true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return ReasonConnReset, false, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonEOF, false, true
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout, false, true
	}
	return "", false, false
}

// Decider returns the default retry decision, for RetryPolicy.Decide. Exactly one of resp and err is
// non-nil (err wins if both are). It returns a Reason constant and true to retry, or "" and false.
//
// An error is never retried when it is a context.Canceled, or when req's own context has ended (the
// caller's deadline or cancellation, or a per-attempt deadline put on req, which the caller handles).
// A context.DeadlineExceeded found in err while req's context is still live comes from the transport
// itself (net/http marks its ResponseHeaderTimeout and Client.Timeout errors so) and counts as a
// timeout. A refused connection is retried for any method, since nothing was sent. A reset, an
// early EOF or a timeout is retried only when Idempotent(req).
//
// An answer is retried only when Idempotent(req): 429, 502, 503 and 504; 500 when retry500; 409 when
// req carries an Idempotency-Key. No other status is retried.
//
// The returned function is safe for concurrent use.
func Decider(retry500 bool) func(req *http.Request, resp *http.Response, err error) (reason string, retry bool) {
	return func(req *http.Request, resp *http.Response, err error) (string, bool) {
		if err != nil {
			return decideError(req, err)
		}
		if resp == nil || !Idempotent(req) {
			return "", false
		}
		switch resp.StatusCode {
		case http.StatusInternalServerError:
			if retry500 {
				return ReasonServerError, true
			}
		case http.StatusConflict:
			if hasIdempotencyKey(req) {
				return ReasonInProgress, true
			}
		default:
			if reason := StatusReason(resp.StatusCode); reason != "" {
				return reason, true
			}
		}
		return "", false
	}
}

// StatusReason names the statuses that say the server could not serve the request this time and
// another attempt may succeed: 429, 502, 503 and 504, plus 500. Any other status gives "". (The
// decision for a request adds its own conditions: 500 only when asked for, and only for requests
// safe to repeat.)
func StatusReason(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return ReasonTooManyRequests
	case http.StatusInternalServerError:
		return ReasonServerError
	case http.StatusBadGateway:
		return ReasonBadGateway
	case http.StatusServiceUnavailable:
		return ReasonUnavailable
	case http.StatusGatewayTimeout:
		return ReasonGatewayTimeout
	}
	return ""
}

// decideError is Decider's rule for a failed attempt: Classify's verdict (the one classifier of
// failed calls, which the token actor uses too), limited to requests safe to repeat unless nothing
// was sent, and never for a caller that gave up.
func decideError(req *http.Request, err error) (string, bool) {
	if errors.Is(err, context.Canceled) || (req != nil && req.Context().Err() != nil) {
		return "", false
	}
	v := Classify(err)
	if !v.Retry {
		return "", false
	}
	if !Idempotent(req) {
		if _, anyMethod, _ := NetworkReason(err); !anyMethod {
			return "", false
		}
	}
	return v.Reason, true
}
