package engine

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// Sentinel errors, usable with errors.Is through every wrap (including *url.Error from http.Client).
var (
	// ErrSessionExpired: the credentials cannot be refreshed any more (the token endpoint refused the
	// refresh token, or there is none). Requests fail fast with it until SetTokens gives new ones.
	// The error that carries it also wraps the cause, such as a *TokenEndpointError.
	ErrSessionExpired = messages.ErrSessionExpired
	// ErrClosed: the engine was closed before or while the request ran.
	ErrClosed = messages.ErrClosed
	// ErrRefreshFailed: a refresh failed for a reason that may pass (5xx, 429, timeout, network).
	// The credentials are kept; the next request tries to refresh again.
	ErrRefreshFailed = messages.ErrRefreshFailed
	// ErrRetryBudgetExhausted: a retry was due, but retries to the host already take their whole share
	// of the traffic (RetryPolicy's budget). The error carrying it wraps the last attempt's error; the
	// typed helpers' *APIError for the last answer wraps it too.
	ErrRetryBudgetExhausted = messages.ErrRetryBudgetExhausted
	// ErrRetryLater: the server's Retry-After ends after the request's deadline; carried by a
	// *RetryLaterError that says when to come back.
	ErrRetryLater = messages.ErrRetryLater
	// ErrAttemptTimeout: an attempt had no response headers within RetryPolicy.AttemptTimeout, and it
	// could not (or could no more) be retried.
	ErrAttemptTimeout = messages.ErrAttemptTimeout
	// ErrNetwork: no (whole) answer came back: the connection could not be made, was reset or closed
	// early, TLS failed, or the network timed out. errors.As still finds the underlying error.
	ErrNetwork = messages.ErrNetwork
	// ErrTimeout: an attempt or the network timed out (ErrAttemptTimeout, a dial, TLS or
	// response-header timeout). The caller's own deadline shows as context.DeadlineExceeded.
	ErrTimeout = messages.ErrTimeout
	// ErrRequestPanicked: something on the request path panicked (a RetryPolicy.Decide, the
	// transport, or a bug of ours). The request is not resent. The error carries the panic's value
	// (credentials cut out); the value and its stack are logged once.
	ErrRequestPanicked = messages.ErrRequestPanicked
	// ErrMalformedTokenAnswer: the token endpoint answered 2xx with something the engine cannot use:
	// not JSON or form fields (a captive portal's page), no access token, a negative or absurd
	// expires_in, or a token with characters that cannot be sent (CR, LF, spaces, control characters,
	// non-ASCII: outside RFC 6750's b64token). Such a token is never sent. It is a refresh failure
	// that may pass (ErrRefreshFailed wraps it): the credentials are kept.
	ErrMalformedTokenAnswer = tokenwire.ErrMalformedAnswer
	// ErrUnsupportedTokenType: the token endpoint issued a token_type other than Bearer (DPoP, MAC,
	// ...), which the engine cannot send. The session ends (ErrSessionExpired wraps it): each retry
	// would spend a refresh token for a token that cannot be used.
	ErrUnsupportedTokenType = tokenwire.ErrUnsupportedTokenType
	// ErrInvalidRequest: RoundTrip was given a request it cannot send (nil URL or Header, no host, a
	// bad method); nothing was sent. net/http's Transport refuses the same requests.
	ErrInvalidRequest = actors.ErrInvalidRequest
)

// TokenEndpointError is a non-2xx answer of the token endpoint: its status and the RFC 6749 §5.2
// error code and description (never a token). Only a 4xx naming invalid_grant ends the session; any
// other answer fails the waiting requests with ErrRefreshFailed and keeps the credentials. Find it
// with errors.As in what a request or a SessionExpired event carries. Its fields and method (an
// alias hides them from go doc):
//
//	Status      int           // the token endpoint's HTTP status
//	Code        string        // the "error" field ("invalid_grant", ...), secrets redacted, ≤ 64 bytes
//	Description string        // "error_description" (or "message"), secrets redacted, ≤ 256 bytes
//	RetryAfter  time.Duration // the answer's Retry-After; 0 when it had none
//	Permanent() bool          // whether retrying the same refresh token cannot help
//
// It stays an alias: the token actor classifies refresh failures with this very type, and the
// error reaches callers along several paths (requests, events, logs), so a defined engine type
// would need a conversion on each.
type TokenEndpointError = tokenwire.EndpointError

// APIError is a non-2xx answer of the API, as the typed helpers (GetJSON, PostJSON, ...) return it.
// It is built in one place from RFC 9457 problem+json, a JSON body with message / error /
// error_description, or plain text, reading at most WithMaxErrorBodyBytes of the body, and only
// what of it arrives promptly (a body that stalls is not waited for). Its texts, the Problem's
// included, never hold the token sent or a WithSecretHeader value (values of 8 bytes or more are
// replaced by "[redacted]"), and each is clipped to 512 bytes of valid UTF-8.
type APIError struct {
	Method    string
	URL       string   // without user info; query values replaced by "redacted"
	Status    int      // HTTP status code
	Code      string   // a machine-readable code: the JSON "code" or "error" field, if any
	Message   string   // the most human-readable text found: detail, message, error_description, title, or the text body
	Problem   *Problem // the RFC 9457 problem document, when the answer was one
	RequestID string   // from X-Request-Id (or X-Correlation-Id), when present
	// RetryAfter is the answer's Retry-After (delta-seconds or HTTP-date, as a wait from when it was
	// read); 0 when it had none.
	RetryAfter time.Duration

	cause error // ErrRetryBudgetExhausted when the budget stopped the retries
}

// Unwrap gives what stopped the engine from retrying, if anything did: ErrRetryBudgetExhausted.
func (e *APIError) Unwrap() error { return e.cause }

// Problem is an RFC 9457 problem document. Extension members are kept, undecoded, in Extensions.
type Problem struct {
	Type       string                     `json:"type,omitempty"`
	Title      string                     `json:"title,omitempty"`
	Status     int                        `json:"status,omitempty"`
	Detail     string                     `json:"detail,omitempty"`
	Instance   string                     `json:"instance,omitempty"`
	Extensions map[string]json.RawMessage `json:"-"`
}

// Error is the method, the URL, the status, and the API's own words when it gave some: a problem's
// title and detail both ("422 Unprocessable Entity: Out of stock: only 2 left"), else Message.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("engine: ")
	b.WriteString(e.Method)
	b.WriteString(" ")
	b.WriteString(e.URL)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.Status))
	status := http.StatusText(e.Status)
	if status != "" {
		b.WriteString(" " + status)
	}
	// A title that only repeats the status text (RFC 9457's about:blank) or the message adds nothing.
	if p := e.Problem; p != nil && p.Title != "" && p.Title != e.Message && !strings.EqualFold(p.Title, status) {
		b.WriteString(": ")
		b.WriteString(p.Title)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// maxErrorText is the most bytes of any one text field an *APIError keeps.
const maxErrorText = 512

// parseAPIError is the one error parser: it turns an error answer and (the first bytes of) its body
// into an *APIError. It never fails: a body it cannot understand still yields the status. Every
// text it keeps is scrubbed of secrets (the credentials the engine sent, which an API may echo)
// and clipped to valid UTF-8.
func parseAPIError(resp *http.Response, body []byte, secrets ...string) *APIError {
	e := &APIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	if resp.Request != nil {
		e.Method, e.URL = resp.Request.Method, redact.URL(resp.Request.URL)
	}
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get("X-Correlation-Id")
	}
	if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), timeNow()); ok {
		e.RetryAfter = d
	}
	parseAPIErrorBody(e, resp.Header.Get("Content-Type"), bytes.TrimSpace(body))
	e.scrub(secrets)
	return e
}

// parseAPIErrorBody fills e's fields from the body, unscrubbed and unclipped.
func parseAPIErrorBody(e *APIError, contentType string, body []byte) {
	if len(body) == 0 {
		return
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/problem+json":
		if p := parseProblem(body); p != nil {
			e.Problem = p
			e.Message = firstNonEmpty(p.Detail, p.Title)
			e.Code = stringMember(p.Extensions, "code")
			return
		}
	case mt == "application/json" || strings.HasSuffix(mt, "+json") || (mt == "" && json.Valid(body)):
		var f map[string]json.RawMessage
		if json.Unmarshal(body, &f) == nil {
			e.Code = firstNonEmpty(stringMember(f, "code"), stringMember(f, "error"))
			e.Message = firstNonEmpty(stringMember(f, "message"), stringMember(f, "error_description"),
				stringMember(f, "detail"), stringMember(f, "title"))
			if e.Message == "" && e.Code != "" && stringMember(f, "error") == e.Code {
				e.Message = e.Code
			}
			return
		}
	}
	if utf8.Valid(body) && !strings.HasPrefix(mt, "text/html") {
		e.Message = string(body)
	}
}

// scrub replaces every secret in e's texts (the Problem's and its extension members included) and
// then clips them: in that order, so that a clip cannot cut a secret into a piece that no longer
// matches.
func (e *APIError) scrub(secrets []string) {
	text := func(s string) string { return redact.Clip(redact.Secrets(s, secrets...), maxErrorText) }
	e.Code, e.Message = text(e.Code), text(e.Message)
	p := e.Problem
	if p == nil {
		return
	}
	p.Type, p.Title, p.Detail, p.Instance = text(p.Type), text(p.Title), text(p.Detail), text(p.Instance)
	for k, raw := range p.Extensions {
		p.Extensions[k] = scrubJSON(raw, secrets)
	}
}

// scrubJSON replaces every secret in the strings (keys included) of a JSON value. A value with no
// escape sequence and no secret in its text is returned as it is; any other is decoded, scrubbed
// and encoded again, so that a secret spelled with escapes ("\u0041…") is found too.
func scrubJSON(raw json.RawMessage, secrets []string) json.RawMessage {
	if !bytes.ContainsRune(raw, '\\') && redact.Secrets(string(raw), secrets...) == string(raw) {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return json.RawMessage(strconv.Quote(redact.Redacted))
	}
	out, err := json.Marshal(scrubValue(v, secrets))
	if err != nil {
		return json.RawMessage(strconv.Quote(redact.Redacted))
	}
	return out
}

func scrubValue(v any, secrets []string) any {
	switch x := v.(type) {
	case string:
		return redact.Secrets(x, secrets...)
	case json.Number: // a numeric API key echoed as a number
		if redact.Secrets(string(x), secrets...) != string(x) {
			return redact.Redacted
		}
	case []any:
		for i := range x {
			x[i] = scrubValue(x[i], secrets)
		}
	case map[string]any:
		clean := make(map[string]any, len(x))
		for k, e := range x {
			clean[redact.Secrets(k, secrets...)] = scrubValue(e, secrets)
		}
		return clean
	}
	return v
}

func parseProblem(body []byte) *Problem {
	var members map[string]json.RawMessage
	if json.Unmarshal(body, &members) != nil {
		return nil
	}
	p := &Problem{}
	if json.Unmarshal(body, p) != nil {
		// A member of the wrong type: keep what is readable.
		p = &Problem{Type: stringMember(members, "type"), Title: stringMember(members, "title"),
			Detail: stringMember(members, "detail"), Instance: stringMember(members, "instance")}
	}
	for _, k := range []string{"type", "title", "status", "detail", "instance"} {
		delete(members, k)
	}
	if len(members) > 0 {
		p.Extensions = members
	}
	return p
}

func stringMember(m map[string]json.RawMessage, key string) string {
	var s string
	if raw, ok := m[key]; ok && json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
