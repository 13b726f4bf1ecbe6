package telemetry

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"strings"

	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/messages"
)

// ErrorType is the error.type of a failed logical request: a short fixed name for the engine's
// own errors, else the conventions' (an ErrorType method, or the error's type name).
func ErrorType(err error) string {
	var rl *messages.RetryLaterError
	switch {
	case errors.Is(err, messages.ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, messages.ErrRefreshFailed):
		return "refresh_failed"
	case errors.Is(err, messages.ErrClosed):
		return "engine_closed"
	case errors.Is(err, messages.ErrRequestPanicked):
		return "request_panicked"
	case errors.As(err, &rl):
		return "retry_later"
	case errors.Is(err, messages.ErrRetryBudgetExhausted):
		return "retry_budget_exhausted"
	case errors.Is(err, messages.ErrAttemptTimeout):
		return "attempt_timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return typeName(unwrapNetwork(err))
}

// unwrapNetwork is the transport's own error inside the engine's network wrapper, so error.type
// names what otelhttp would name for the same failure (*net.OpError, *url.Error, ...).
func unwrapNetwork(err error) error {
	if errors.Is(err, messages.ErrNetwork) {
		if u := errors.Unwrap(err); u != nil {
			return u
		}
	}
	return err
}

// typeName is error.type for an error that has no name of its own, computed as otelhttp does it so
// that both put the same failure in the same series: an ErrorType method's answer, else the error's
// type as package path and name ("net.OpError" for a *net.OpError).
func typeName(err error) string {
	if et, ok := err.(interface{ ErrorType() string }); ok {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	t := reflect.TypeOf(err)
	if t == nil {
		return "_OTHER"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() == "" || t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// safeMessage is err's text for a span status, with the query values of any URL in it redacted
// (net/http's *url.Error prints the whole URL).
func safeMessage(err error) string {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && (u.RawQuery != "" || u.User != nil) {
			msg = strings.ReplaceAll(msg, ue.URL, redact.URL(u))
		}
	}
	return msg
}
