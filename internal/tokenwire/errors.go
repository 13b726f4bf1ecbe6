package tokenwire

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// ErrMalformedAnswer is wrapped by every error about a 2xx token answer that could not be used: not
// JSON or form fields (a captive portal's page), larger than the limit, without an access token,
// with a bad expires_in, or with a token that cannot be sent (*InvalidTokenError). Such an answer is
// a failed refresh that may pass, not proof that the session is over: the credentials must be kept
// and the refresh retried like any transient failure.
// It wraps retry.ErrMalformedAnswer, so the one classifier (retry.Classify) retries it.
var ErrMalformedAnswer error = malformedAnswer{}

// malformedAnswer is ErrMalformedAnswer's type: its own text, and retry's sentinel underneath.
type malformedAnswer struct{}

func (malformedAnswer) Error() string { return "malformed token answer" }
func (malformedAnswer) Unwrap() error { return retry.ErrMalformedAnswer }

// ErrUnsupportedTokenType is wrapped by *TokenTypeError.
var ErrUnsupportedTokenType = errors.New("unsupported token type")

// InvalidTokenError is a token answer whose access or refresh token has a character it must not
// have (see CheckAccessToken and CheckRefreshToken). It never holds the token itself. It wraps
// ErrMalformedAnswer: the refresh failed, the credentials in use stay.
type InvalidTokenError struct {
	Field  string // "access token" or "refresh token"
	Offset int    // the byte offset of the first character not allowed; -1 for an empty token
	Char   string // that character, named ("CR", "space", "non-ASCII byte 0xc3", ...)
}

// Error names the token and the character, never the token's value.
func (e *InvalidTokenError) Error() string {
	if e.Offset < 0 {
		return "malformed token answer: the " + e.Field + " is empty"
	}
	return "malformed token answer: the " + e.Field + " has a character that cannot be sent (" + e.Char +
		" at byte " + strconv.Itoa(e.Offset) + ")"
}

// Unwrap makes errors.Is(err, ErrMalformedAnswer) true.
func (e *InvalidTokenError) Unwrap() error { return ErrMalformedAnswer }

// TokenTypeError is a token answer whose token_type the engine cannot send: it sends Bearer tokens
// only (RFC 6750), and a DPoP- or MAC-bound token sent as Bearer would be refused by the API anyway.
// Retrying cannot help, and each try would spend a refresh token: errors.Is finds
// ErrUnsupportedTokenType and messages.ErrSessionExpired in it, so the session ends with this cause.
type TokenTypeError struct {
	Type string // the token_type the server named (clipped)
}

// Error names the type the server issued and the one the engine sends.
func (e *TokenTypeError) Error() string {
	return "unsupported token type: the token endpoint issued a " + strconv.Quote(e.Type) +
		" token; the engine can send Bearer tokens only"
}

// Unwrap makes errors.Is find ErrUnsupportedTokenType and messages.ErrSessionExpired.
func (e *TokenTypeError) Unwrap() []error {
	return []error{ErrUnsupportedTokenType, messages.ErrSessionExpired}
}

// EndpointError is a non-2xx answer of the token endpoint. Code and Description come from the RFC 6749
// §5.2 error fields (or a "message" field) of a JSON or form answer when it had them; they never
// contain a token or the client secret.
type EndpointError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration // the answer's Retry-After, when it had one (0 otherwise)

	// refused: a JSON-format endpoint's 401 with a JSON body. That format has no error codes, so
	// its own 401 is how it refuses a refresh token (a proxy's page is not JSON).
	refused bool
}

// Error is the token endpoint's status and its OAuth error code, never a token.
func (e *EndpointError) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint answered ")
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// InvalidGrant is the RFC 6749 §5.2 error code that says the grant itself (the refresh token) is
// invalid, expired or revoked: the one token endpoint answer that ends a session.
const InvalidGrant = "invalid_grant"

// Permanent reports whether retrying the same refresh token cannot help: only a 4xx whose body names
// the RFC 6749 invalid_grant error (or, for the JSON format, which has no codes, its 401 with a JSON
// body). Any other 4xx (a WAF's 403 page, a 404 during a deploy, a 401
// invalid_client while a client secret is rotated) says nothing about the refresh token, so the
// credentials are kept and a later request tries again.
func (e *EndpointError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout &&
		e.Status != http.StatusTooManyRequests && (e.Code == InvalidGrant || e.refused)
}

// HTTPStatus is the answer's status and the wait its Retry-After asked for (0 when none), for a
// classifier that knows errors by their methods rather than by this type.
func (e *EndpointError) HTTPStatus() (status int, retryAfter time.Duration) {
	return e.Status, e.RetryAfter
}

// endpointError builds the typed error for a non-2xx answer from its RFC 6749 §5.2 fields, if any.
// Every secret is replaced before the fields are clipped, so that a clip cannot cut one into a piece
// that no longer matches.
func endpointError(resp *http.Response, body []byte, secrets ...string) *EndpointError {
	e := newEndpointError(resp)
	var fields struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return e
		}
		fields.Error, fields.Description, fields.Message = vals.Get("error"), vals.Get("error_description"), vals.Get("message")
	case mt == "application/json" || strings.HasSuffix(mt, "+json") || json.Valid(body):
		if json.Unmarshal(body, &fields) != nil {
			return e
		}
	default:
		return e
	}
	e.Code = safeText(fields.Error, 64, secrets)
	e.Description = safeText(fields.Description, 256, secrets)
	if e.Description == "" {
		e.Description = safeText(fields.Message, 256, secrets)
	}
	return e
}

// safeText is a server's text made fit for an error: secrets replaced, then clipped to n bytes of
// valid UTF-8.
func safeText(s string, n int, secrets []string) string {
	return redact.Clip(redact.Secrets(s, secrets...), n)
}

// newEndpointError is the error for a non-2xx answer before its body is read: status and Retry-After.
func newEndpointError(resp *http.Response) *EndpointError {
	e := &EndpointError{Status: resp.StatusCode}
	if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter = d
	}
	return e
}
