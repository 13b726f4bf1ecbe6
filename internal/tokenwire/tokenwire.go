// Package tokenwire speaks the token endpoint's wire formats: it builds refresh requests and turns
// answers into credentials or typed errors. It does no retrying and keeps no state.
package tokenwire

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/redact"
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

// Config is what a built-in refresher needs.
type Config struct {
	Endpoint     string
	Format       Format
	Client       *http.Client // does the HTTP; its Transport is the engine's base transport
	MaxBytes     int64        // the most bytes read from one answer
	ClientID     string       // optional client authentication (HTTP Basic, RFC 6749 §2.3.1)
	ClientSecret string
}

// Refresh trades current.Refresh for a new pair: RefreshAnswer without the token type, for callers
// that send every access token as a Bearer token (the only type RefreshAnswer accepts).
func Refresh(ctx context.Context, c Config, current messages.Tokens, now time.Time) (messages.Tokens, error) {
	a, err := RefreshAnswer(ctx, c, current, now)
	return a.Tokens, err
}

// RefreshAnswer trades current.Refresh for a new pair. It returns *EndpointError for non-2xx
// answers; for a 2xx answer it cannot use, an error wrapping ErrMalformedAnswer (a failed refresh
// that may pass) or a *TokenTypeError (a token the engine cannot send); the transport's error
// otherwise. No error holds a token or the client secret.
func RefreshAnswer(ctx context.Context, c Config, current messages.Tokens, now time.Time) (Answer, error) {
	req, err := newRequest(ctx, c, current.Refresh)
	if err != nil {
		return Answer{}, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.MaxBytes+1))
	if err != nil {
		return Answer{}, err
	}
	// A server that echoes what it was sent must not put it in our errors.
	secrets := append([]string{current.Refresh, current.Access, c.ClientSecret}, redact.BasicCredentials(c.ClientID, c.ClientSecret)...)
	if int64(len(body)) > c.MaxBytes {
		if resp.StatusCode/100 != 2 {
			return Answer{}, newEndpointError(resp)
		}
		return Answer{}, fmt.Errorf("%w: larger than %d bytes", ErrMalformedAnswer, c.MaxBytes)
	}
	if resp.StatusCode/100 != 2 {
		e := endpointError(resp, body, secrets...)
		e.refused = c.Format == JSON && resp.StatusCode == http.StatusUnauthorized && json.Valid(body)
		return Answer{}, e
	}
	a, err := Parse(c.Format, resp.Header.Get("Content-Type"), body, now, secrets...)
	if err != nil {
		return Answer{}, err
	}
	if a.Tokens.Refresh == "" { // RFC 6749 §6: no new refresh token means the old one stays valid
		a.Tokens.Refresh = current.Refresh
	}
	return a, nil
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
