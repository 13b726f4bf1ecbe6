// Package tokenwire speaks the token endpoint's wire formats: it builds refresh requests and turns
// answers into credentials or typed errors. It does no retrying and keeps no state.
package tokenwire

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

// Format names a refresh protocol.
type Format int

const (
	// OAuth2 is RFC 6749 §6: a form POST grant_type=refresh_token&refresh_token=…, answered with JSON
	// access_token, refresh_token (optional: the old one stays), expires_in (optional).
	OAuth2 Format = iota + 1
	// JSON is the seed application's format: POST {"refreshToken": …} answered with
	// {"accessToken": …, "refreshToken": …} (expiresIn optional; a JWT exp claim is read otherwise).
	JSON
)

// String names the format.
func (f Format) String() string {
	switch f {
	case OAuth2:
		return "oauth2"
	case JSON:
		return "json"
	default:
		return "Format(" + strconv.Itoa(int(f)) + ")"
	}
}

// Valid reports whether f is a known format.
func (f Format) Valid() bool { return f == OAuth2 || f == JSON }

// ErrMalformed is wrapped by every error about a token answer that could not be understood: not JSON,
// larger than the limit, or without an access token. It wraps retry.ErrMalformedAnswer: retry.Classify
// takes it for a passing failure.
var ErrMalformed error = malformedError{}

// malformedError is ErrMalformed's type.
type malformedError struct{}

func (malformedError) Error() string { return "malformed token response" }
func (malformedError) Unwrap() error { return retry.ErrMalformedAnswer }

// EndpointError is a non-2xx answer of the token endpoint. Code and Description come from the RFC 6749
// §5.2 error fields (or a "message" field) when the body had them; they never contain a token.
type EndpointError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration // the answer's Retry-After, when it had one (0 otherwise)
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

// HTTPStatus is the answer's status and Retry-After, for retry.Classify.
func (e *EndpointError) HTTPStatus() (int, time.Duration) { return e.Status, e.RetryAfter }

// Permanent reports whether retrying the same refresh token cannot help: a 4xx other than 408 and 429.
func (e *EndpointError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// Config is what a built-in refresher needs.
type Config struct {
	Endpoint     string
	Format       Format
	Client       *http.Client // does the HTTP; its Transport is the engine's base transport
	MaxBytes     int64        // the most bytes read from one answer
	ClientID     string       // optional client authentication (HTTP Basic, RFC 6749 §2.3.1)
	ClientSecret string
}

// Refresh trades current.Refresh for a new pair. It returns *EndpointError for non-2xx answers, an
// error wrapping ErrMalformed for answers it cannot use, and the transport's error otherwise.
func Refresh(ctx context.Context, c Config, current messages.Tokens, now time.Time) (messages.Tokens, error) {
	req, err := newRequest(ctx, c, current.Refresh)
	if err != nil {
		return messages.Tokens{}, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return messages.Tokens{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBytes+1))
	if err != nil {
		return messages.Tokens{}, err
	}
	if int64(len(body)) > c.MaxBytes {
		if resp.StatusCode/100 != 2 {
			return messages.Tokens{}, newEndpointError(resp)
		}
		return messages.Tokens{}, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, c.MaxBytes)
	}
	if resp.StatusCode/100 != 2 {
		// A server that echoes what it was sent must not put it in our errors.
		return messages.Tokens{}, endpointError(resp, body, current.Refresh, current.Access, c.ClientSecret)
	}
	tok, err := Parse(c.Format, body, now)
	if err != nil {
		return messages.Tokens{}, err
	}
	if tok.Refresh == "" { // RFC 6749 §6: no new refresh token means the old one stays valid
		tok.Refresh = current.Refresh
	}
	return tok, nil
}

func newRequest(ctx context.Context, c Config, refresh string) (*http.Request, error) {
	var (
		body        string
		contentType string
	)
	switch c.Format {
	case OAuth2:
		body = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()
		contentType = "application/x-www-form-urlencoded"
	case JSON:
		b, err := json.Marshal(struct {
			RefreshToken string `json:"refreshToken"`
		}{refresh})
		if err != nil {
			return nil, err
		}
		body, contentType = string(b), "application/json"
	default:
		return nil, fmt.Errorf("unknown refresh format %v", c.Format)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if c.ClientID != "" {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	return req, nil
}

// answer is the union of both formats' fields.
type answer struct {
	AccessToken   string      `json:"access_token"`
	RefreshToken  string      `json:"refresh_token"`
	ExpiresIn     json.Number `json:"expires_in"`
	AccessToken2  string      `json:"accessToken"`
	RefreshToken2 string      `json:"refreshToken"`
	ExpiresIn2    json.Number `json:"expiresIn"`
}

// Parse reads a successful token answer in format f. The expiry comes from expires_in (seconds from
// now) when present, else from the access token's JWT exp claim, else it is unknown (zero).
func Parse(f Format, body []byte, now time.Time) (messages.Tokens, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return messages.Tokens{}, fmt.Errorf("%w: %v", ErrMalformed, jsonProblem(err))
	}
	var t messages.Tokens
	var expiresIn json.Number
	switch f {
	case OAuth2:
		t.Access, t.Refresh, expiresIn = a.AccessToken, a.RefreshToken, a.ExpiresIn
	case JSON:
		t.Access, t.Refresh, expiresIn = a.AccessToken2, a.RefreshToken2, a.ExpiresIn2
	default:
		return messages.Tokens{}, fmt.Errorf("unknown refresh format %v", f)
	}
	if t.Access == "" {
		return messages.Tokens{}, fmt.Errorf("%w: no access token", ErrMalformed)
	}
	if expiresIn != "" {
		secs, err := expiresIn.Float64()
		if err != nil || secs < 0 || secs > 10*365*24*3600 {
			return messages.Tokens{}, fmt.Errorf("%w: bad expires_in", ErrMalformed)
		}
		if secs > 0 {
			t.Expiry = now.Add(time.Duration(secs * float64(time.Second)))
		}
	}
	if t.Expiry.IsZero() {
		if exp, ok := JWTExpiry(t.Access); ok {
			t.Expiry = exp
		}
	}
	return t, nil
}

// jsonProblem describes a JSON error without quoting the input (which may hold a token).
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "invalid JSON at offset " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		return "field " + typ.Field + " has the wrong type"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return "invalid JSON"
	}
}

// JWTExpiry reads the exp claim of a JWT without verifying it (the engine only schedules refreshes
// with it; the API verifies tokens). ok is false for anything that is not a JWT with a numeric exp.
func JWTExpiry(token string) (time.Time, bool) {
	first := strings.IndexByte(token, '.')
	if first < 0 {
		return time.Time{}, false
	}
	rest := token[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || len(rest[:second]) > 8<<10 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(rest[:second], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil || secs <= 0 || secs > 1<<40 {
		return time.Time{}, false
	}
	whole := int64(secs)
	return time.Unix(whole, int64((secs-float64(whole))*1e9)), true
}

// endpointError builds the typed error for a non-2xx answer from its RFC 6749 §5.2 fields, if any.
// Every secret is replaced by "[redacted]" before the fields are clipped, so that a clip cannot cut
// one into a piece that no longer matches.
func endpointError(resp *http.Response, body []byte, secrets ...string) *EndpointError {
	e := newEndpointError(resp)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") && !json.Valid(body) {
		return e
	}
	var fields struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	if json.Unmarshal(body, &fields) == nil {
		e.Code = clip(redact(fields.Error, secrets), 64)
		e.Description = clip(redact(fields.Description, secrets), 256)
		if e.Description == "" {
			e.Description = clip(redact(fields.Message, secrets), 256)
		}
	}
	return e
}

func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// newEndpointError is the error for a non-2xx answer before its body is read: status and Retry-After.
func newEndpointError(resp *http.Response) *EndpointError {
	e := &EndpointError{Status: resp.StatusCode}
	if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter = d
	}
	return e
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
