package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// Only the session's end (invalid_grant, or ErrSessionExpired itself) is permanent; passing failures worth repeating are retried with their
// reason and the server's wait; anything else is passing but not repeated at once.
func TestClassify(t *testing.T) {
	endpoint := func(status int, code string, wait time.Duration) error {
		return fmt.Errorf("refresh: %w", &tokenwire.EndpointError{Status: status, Code: code, RetryAfter: wait})
	}
	for _, tc := range []struct {
		name string
		err  error
		want retry.Verdict
	}{
		{"nil", nil, retry.Verdict{}},
		{"session expired", fmt.Errorf("user disabled: %w", messages.ErrSessionExpired), retry.Verdict{Permanent: true}},
		{"invalid_grant", endpoint(400, "invalid_grant", 0), retry.Verdict{Permanent: true}},
		{"401 invalid_client: passing", endpoint(401, "invalid_client", 0), retry.Verdict{Status: 401}},
		{"403 without a code: passing", endpoint(403, "", 0), retry.Verdict{Status: 403}},
		{"404: passing", endpoint(404, "", 0), retry.Verdict{Status: 404}},
		{"503 with Retry-After", endpoint(503, "", 2*time.Second), retry.Verdict{Retry: true, Reason: retry.ReasonUnavailable, Wait: 2 * time.Second, Status: 503}},
		{"429", endpoint(429, "", 0), retry.Verdict{Retry: true, Reason: retry.ReasonTooManyRequests, Status: 429}},
		{"408", endpoint(http.StatusRequestTimeout, "", 0), retry.Verdict{Retry: true, Reason: retry.ReasonTimeout, Status: 408}},
		{"500", endpoint(500, "", 0), retry.Verdict{Retry: true, Reason: retry.ReasonServerError, Status: 500}},
		{"501: passing, not repeated", endpoint(501, "", 0), retry.Verdict{Status: 501}},
		{"malformed answer", fmt.Errorf("%w: not JSON", tokenwire.ErrMalformedAnswer), retry.Verdict{Retry: true, Reason: retry.ReasonMalformed}},
		{"the call's timeout", fmt.Errorf("post: %w", context.DeadlineExceeded), retry.Verdict{Retry: true, Reason: retry.ReasonTimeout}},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), retry.Verdict{Retry: true, Reason: retry.ReasonConnRefused}},
		{"early EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), retry.Verdict{Retry: true, Reason: retry.ReasonEOF}},
		{"a refresh function's own error", errors.New("identity provider unreachable"), retry.Verdict{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, retry.Classify(tc.err))
		})
	}
}
