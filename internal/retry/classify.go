package retry

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/resilientclient/resilient/messages"
)

// ErrMalformedAnswer is wrapped by errors about an answer that could not be understood (a token
// endpoint's 200 that is not a token answer, say). Such an answer is not proof of anything: it is a
// passing failure, worth another try.
var ErrMalformedAnswer = errors.New("malformed answer")

// Verdict is what Classify says about a failed call.
type Verdict struct {
	// Permanent: trying again with the same credentials cannot help (the session is over).
	Permanent bool
	// Retry: another call may succeed; Reason says why it failed (a Reason constant) and Wait is how
	// long the server asked us to wait (0 when it did not say).
	Retry  bool
	Reason string
	Wait   time.Duration
	Status int // the answer's status, when the error carried one
}

// ReasonMalformed is an answer that could not be understood (ErrMalformedAnswer).
const ReasonMalformed = "malformed_answer"

// statusError is an error that carries an HTTP answer: its status, the Retry-After it asked for,
// and whether the answer is definitive (an OAuth invalid_grant, say). The token endpoint's errors
// are such errors.
type statusError interface {
	error
	Permanent() bool
	HTTPStatus() (status int, retryAfter time.Duration)
}

// Classify is the one classifier of failed calls that the token actor and the request path share.
// Only two things end a session: an error wrapping messages.ErrSessionExpired, and an answer that
// says so itself (an error with Permanent() true: the token endpoint's invalid_grant; any other 4xx
// of the token endpoint is passing).
// Everything else is passing. Of the passing failures, these are retried: an answer of 408, 429,
// 500, 502, 503 or 504 (with its Retry-After), a malformed answer, the call's own timeout
// (context.DeadlineExceeded; a caller whose own context ended checks that first), and the network
// failures NetworkReason names. Other errors (a user refresh function's own, say) are not repeated
// at once: the next request tries again.
func Classify(err error) Verdict {
	if err == nil {
		return Verdict{}
	}
	if errors.Is(err, messages.ErrSessionExpired) {
		return Verdict{Permanent: true}
	}
	var se statusError
	if errors.As(err, &se) {
		if se.Permanent() {
			return Verdict{Permanent: true}
		}
		status, wait := se.HTTPStatus()
		if status == http.StatusRequestTimeout {
			return Verdict{Retry: true, Reason: ReasonTimeout, Wait: wait, Status: status}
		}
		if reason := StatusReason(status); reason != "" {
			return Verdict{Retry: true, Reason: reason, Wait: wait, Status: status}
		}
		return Verdict{Status: status}
	}
	if errors.Is(err, ErrMalformedAnswer) {
		return Verdict{Retry: true, Reason: ReasonMalformed}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Verdict{Retry: true, Reason: ReasonTimeout}
	}
	if reason, _, ok := NetworkReason(err); ok {
		return Verdict{Retry: true, Reason: reason}
	}
	return Verdict{}
}
