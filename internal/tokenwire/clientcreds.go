package tokenwire

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/redact"
)

// ClientAuth is how a client authenticates to the token endpoint (RFC 6749 §2.3.1).
type ClientAuth int

const (
	// AuthBasic sends client_id and client_secret in an HTTP Basic Authorization header, each
	// form-encoded first as §2.3.1 says (client_secret_basic, the default every server must support).
	AuthBasic ClientAuth = iota
	// AuthPost sends client_id and client_secret as form fields in the body (client_secret_post).
	AuthPost
)

// String names the method as RFC 8414's token_endpoint_auth_method does.
func (a ClientAuth) String() string {
	switch a {
	case AuthBasic:
		return "client_secret_basic"
	case AuthPost:
		return "client_secret_post"
	default:
		return fmt.Sprintf("ClientAuth(%d)", int(a))
	}
}

// Valid reports whether a is a known method.
func (a ClientAuth) Valid() bool { return a == AuthBasic || a == AuthPost }

// ClientCredentials is what a client-credentials fetch (RFC 6749 §4.4) needs.
type ClientCredentials struct {
	Endpoint     string
	Client       *http.Client // does the HTTP; its Transport is the engine's base transport
	MaxBytes     int64        // the most bytes read from one answer
	ClientID     string
	ClientSecret string
	Auth         ClientAuth
	Scopes       []string   // sent space-separated as scope, when any
	Audience     string     // sent as audience, when set (Auth0, Okta and others ask for it)
	Resources    []string   // RFC 8707 resource indicators, one resource field each
	Params       url.Values // further form fields, sent as given (never overriding the ones above)
}

// FetchClientCredentials asks the token endpoint for a new access token with the client's own
// credentials. The answer is checked as Parse checks an RFC 6749 answer; a refresh token in it is
// dropped (§4.4.3: the grant has none to use, and keeping one would invite replaying it). Errors are
// those of RefreshAnswer: *EndpointError for a non-2xx answer (invalid_client for a wrong secret is a
// definitive 401 or 400), ErrMalformedAnswer or *TokenTypeError for a 2xx answer that cannot be
// used, the transport's error otherwise. No error holds the client secret or a token.
func FetchClientCredentials(ctx context.Context, c ClientCredentials, now time.Time) (Answer, error) {
	form := url.Values{}
	for k, v := range c.Params {
		form[k] = append([]string(nil), v...)
	}
	form.Set("grant_type", "client_credentials")
	if len(c.Scopes) > 0 {
		form.Set("scope", strings.Join(c.Scopes, " "))
	}
	if c.Audience != "" {
		form.Set("audience", c.Audience)
	}
	if len(c.Resources) > 0 {
		form["resource"] = append([]string(nil), c.Resources...)
	}
	if c.Auth == AuthPost {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	} else {
		form.Del("client_id")
		form.Del("client_secret")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.Auth != AuthPost {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	a, err := exchange(c.Client, req, c.MaxBytes, now, append(redact.BasicCredentials(c.ClientID, c.ClientSecret), c.ClientSecret)...)
	a.Tokens.Refresh = ""
	return a, err
}

// exchange sends a token request and reads its answer in RFC 6749's format: an *EndpointError for
// a non-2xx answer, Parse's result for a 2xx one, never more than maxBytes read. secrets are kept out
// of every error.
func exchange(client *http.Client, req *http.Request, maxBytes int64, now time.Time, secrets ...string) (Answer, error) {
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return Answer{}, err
	}
	if int64(len(body)) > maxBytes {
		if resp.StatusCode/100 != 2 {
			return Answer{}, newEndpointError(resp)
		}
		return Answer{}, fmt.Errorf("%w: larger than %d bytes", ErrMalformedAnswer, maxBytes)
	}
	if resp.StatusCode/100 != 2 {
		return Answer{}, endpointError(resp, body, secrets...)
	}
	return Parse(OAuth2, resp.Header.Get("Content-Type"), body, now, secrets...)
}
