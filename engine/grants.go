package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/internal/tokenwire"
)

// ClientAuthMethod is how the engine authenticates to the token endpoint in the client-credentials
// grant (RFC 6749 §2.3.1; the names are RFC 8414's token_endpoint_auth_method values).
type ClientAuthMethod int

const (
	// ClientSecretBasic sends the client ID and secret in an HTTP Basic header, each form-encoded
	// first as RFC 6749 §2.3.1 says. The default: every server must support it.
	ClientSecretBasic = ClientAuthMethod(tokenwire.AuthBasic)
	// ClientSecretPost sends them as client_id and client_secret form fields.
	ClientSecretPost = ClientAuthMethod(tokenwire.AuthPost)
)

// String is the method's RFC 8414 name.
func (m ClientAuthMethod) String() string { return tokenwire.ClientAuth(m).String() }

// ClientCredentials configures the client-credentials grant (RFC 6749 §4.4), the usual grant between
// services: the engine fetches an access token with the client's own ID and secret when it has none,
// when it expires (before, by WithRefreshSkew) and when the API rejects it. Its fields mirror
// golang.org/x/oauth2/clientcredentials.Config.
type ClientCredentials struct {
	TokenURL     string // the token endpoint; required
	ClientID     string // required
	ClientSecret string // never appears in an error or a log
	// AuthMethod is how the client authenticates. Default: ClientSecretBasic.
	AuthMethod ClientAuthMethod
	// Scopes are sent space-separated as scope. Default: none (the server's default scope).
	Scopes []string
	// Audience is sent as audience, for servers that want it (Auth0, Okta). Default: not sent.
	Audience string
	// Resources are RFC 8707 resource indicators, one resource field each. Default: none.
	Resources []string
	// EndpointParams are further form fields sent as they are; they never replace the fields above.
	EndpointParams url.Values
}

// String describes the settings without the client secret.
func (cc ClientCredentials) String() string {
	secret := "none"
	if cc.ClientSecret != "" {
		secret = "set"
	}
	return fmt.Sprintf("ClientCredentials{TokenURL: %q, ClientID: %q, ClientSecret: %s, AuthMethod: %v, Scopes: %q, Audience: %q, Resources: %q}",
		cc.TokenURL, cc.ClientID, secret, cc.AuthMethod, cc.Scopes, cc.Audience, cc.Resources)
}

// GoString is String, for %#v.
func (cc ClientCredentials) GoString() string { return cc.String() }

// Format makes every fmt verb print the form without the secret.
func (cc ClientCredentials) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(cc.String())) }

// LogValue makes log/slog print the form without the secret.
func (cc ClientCredentials) LogValue() slog.Value { return slog.StringValue(cc.String()) }

// WithClientCredentials makes the engine get its access tokens with the client-credentials grant.
// No WithTokens is needed: the first request fetches a token (a TokenStore that holds one saves that
// fetch after a restart). A fetch is done once however many requests wait for it, a transient
// failure of the endpoint is retried under the retry policy, and a refusal (invalid_client for a
// wrong secret, any 4xx) fails the waiting requests with ErrRefreshFailed wrapping a
// *TokenEndpointError; the next request asks again (a secret being rotated may work by then). It replaces WithTokenEndpoint, WithClientAuth and WithRefreshFunc, which cannot
// be given with it. Default: none.
func WithClientCredentials(cc ClientCredentials) Option {
	return func(c *config) { c.grant = clientCredsGrant{cc} }
}

// WithTokenSource makes the engine get its access tokens from ts: an x/oauth2 config's TokenSource,
// google.golang.org/api credentials, a JWT-bearer flow, anything that implements it. Only the token
// actor calls ts.Token, one call at a time (many sources are not safe for concurrent refresh), when
// the engine has no usable token: at the first request, when the token has expired, and when the API
// rejected it.
//
// Sources cache: an x/oauth2 source hands out the same token until 10 s before its expiry, and a
// source cannot be told to drop a token the API refused. So when ts returns the very token that was
// rejected, the engine asks once more, and if the same token comes back it fails the requests waiting
// for it with ErrRefreshFailed wrapping ErrStaleToken (credentials kept: a later request asks again)
// rather than sending a refused token in a loop. For the same reason the engine does not renew ahead
// of expiry with a TokenSource (WithRefreshSkew has no effect): it cannot make the source renew
// early. Holding an *oauth2.Config and a token with a refresh token, prefer WithOAuth2Config, which
// can force a refresh.
//
// ts.Token takes no context, so WithRefreshTimeout cannot end a call that hangs: give the source an
// HTTP client with a timeout. Errors are read into the engine's model: an *oauth2.RetrieveError becomes
// a *TokenEndpointError (invalid_grant ends the session, a 5xx is retried). A nil ts is an error
// of New. Default: none.
func WithTokenSource(ts oauth2.TokenSource) Option {
	return func(c *config) { c.grant = tokenSourceGrant{ts: ts, mu: &sync.Mutex{}} }
}

// WithOAuth2Config refreshes with cfg's token endpoint and client credentials (cfg.Endpoint.TokenURL,
// cfg.Endpoint.AuthStyle, ClientID, ClientSecret), starting from tok, through x/oauth2's own wire
// code: for users of an x/oauth2 authorization-code (or device) flow who hold its token. Every refresh
// is forced: the engine asks cfg for a source seeded with the refresh token and no access token, so
// proactive renewal and a rejected token both get a new token, and the rotated refresh token is
// presented exactly once. tok needs a refresh token; it is used like WithTokens (a TokenStore that
// holds credentials wins). It replaces WithTokenEndpoint, WithClientAuth and WithRefreshFunc.
// Default: none.
func WithOAuth2Config(cfg *oauth2.Config, tok *oauth2.Token) Option {
	return func(c *config) {
		c.grant = oauth2ConfigGrant{cfg}
		if tok != nil {
			c.tokens = &Tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, Expiry: tok.Expiry}
		}
	}
}

// ErrStaleToken is wrapped (under ErrRefreshFailed) by the error of requests whose token the API
// rejected when the TokenSource given to WithTokenSource kept returning that same token.
var ErrStaleToken = errors.New("engine: the token source returned the token the API rejected")

// grant is a way of getting tokens other than the built-in refresh formats: it checks its own
// settings, builds the token actor's refresh function, and adjusts the token actor's config.
type grant interface {
	option() string
	check() []error
	refresher(c *config, base http.RoundTripper) actors.RefreshFunc
	tune(tc *actors.TokenConfig)
}

// checkGrant validates the grant option against the others.
func (c *config) checkGrant(public bool) []error {
	if c.grant == nil {
		return nil
	}
	name := c.grant.option()
	if public {
		return []error{configErr(name, "a public engine never attaches or refreshes tokens; use New")}
	}
	errs := c.grant.check()
	for _, other := range []struct {
		name string
		set  bool
	}{{"WithTokenEndpoint", c.tokenEndpoint != ""}, {"WithRefreshFunc", c.refreshFunc != nil}, {"WithClientAuth", c.clientID != ""}} {
		if other.set {
			errs = append(errs, configErr(name, "cannot be given with %s: it says how tokens are obtained", other.name))
		}
	}
	return errs
}

// tuneGrant lets the grant adjust the token actor's config.
func (c *config) tuneGrant(tc *actors.TokenConfig) {
	if c.grant != nil {
		c.grant.tune(tc)
	}
}

// tokenClient is the HTTP client of token requests: the engine's base transport, no redirects (a
// secret is never sent on to another URL).
func tokenClient(base http.RoundTripper) *http.Client {
	return &http.Client{Transport: base, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// endpointHost is the host[:port] of a token URL, for the retry budget, events and telemetry.
func endpointHost(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return strings.ToLower(u.Host)
	}
	return ""
}

type clientCredsGrant struct{ cc ClientCredentials }

func (clientCredsGrant) option() string { return "WithClientCredentials" }

func (g clientCredsGrant) check() []error {
	var errs []error
	if _, err := actors.ParseOrigin(g.cc.TokenURL); err != nil {
		errs = append(errs, configErr("WithClientCredentials", "TokenURL: %v", err))
	}
	if g.cc.ClientID == "" {
		errs = append(errs, configErr("WithClientCredentials", "ClientID is required"))
	}
	if !tokenwire.ClientAuth(g.cc.AuthMethod).Valid() {
		errs = append(errs, configErr("WithClientCredentials", "unknown AuthMethod %d", int(g.cc.AuthMethod)))
	}
	return errs
}

func (g clientCredsGrant) refresher(c *config, base http.RoundTripper) actors.RefreshFunc {
	wc := tokenwire.ClientCredentials{
		Endpoint: g.cc.TokenURL, Client: tokenClient(base), MaxBytes: c.maxTokenBytes,
		ClientID: g.cc.ClientID, ClientSecret: g.cc.ClientSecret, Auth: tokenwire.ClientAuth(g.cc.AuthMethod),
		Scopes: g.cc.Scopes, Audience: g.cc.Audience, Resources: g.cc.Resources, Params: g.cc.EndpointParams,
	}
	return func(ctx context.Context, _ Tokens) (Tokens, error) {
		a, err := tokenwire.FetchClientCredentials(ctx, wc, timeNow())
		return a.Tokens, err
	}
}

func (g clientCredsGrant) tune(tc *actors.TokenConfig) { tc.RefreshHost = endpointHost(g.cc.TokenURL) }

type tokenSourceGrant struct {
	ts oauth2.TokenSource
	// mu serialises calls to ts. The token actor runs one refresh at a time, but a refresh it
	// abandons (SetTokens, a new login) may still be inside ts.Token, which no context can end,
	// when the next one starts.
	mu *sync.Mutex
}

func (tokenSourceGrant) option() string { return "WithTokenSource" }

func (g tokenSourceGrant) check() []error {
	if g.ts == nil {
		return []error{configErr("WithTokenSource", "nil TokenSource")}
	}
	return nil
}

func (g tokenSourceGrant) refresher(_ *config, _ http.RoundTripper) actors.RefreshFunc {
	return func(_ context.Context, current Tokens) (Tokens, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		t, err := fromSource(g.ts, current)
		if err == nil && current.Access != "" && t.Access == current.Access {
			// The source still holds the token the engine gave up on (rejected or expired): ask once
			// more, in case it has moved on since, then stop rather than loop.
			if t, err = fromSource(g.ts, current); err == nil && t.Access == current.Access {
				return Tokens{}, ErrStaleToken
			}
		}
		return t, err
	}
}

// tune turns proactive renewal off: an opaque source cannot be made to renew early, so asking it
// ahead of expiry would only bring back the same token.
func (tokenSourceGrant) tune(tc *actors.TokenConfig) { tc.Skew = -1 }

type oauth2ConfigGrant struct{ cfg *oauth2.Config }

func (oauth2ConfigGrant) option() string { return "WithOAuth2Config" }

func (g oauth2ConfigGrant) check() []error {
	if g.cfg == nil {
		return []error{configErr("WithOAuth2Config", "nil *oauth2.Config")}
	}
	if _, err := actors.ParseOrigin(g.cfg.Endpoint.TokenURL); err != nil {
		return []error{configErr("WithOAuth2Config", "Endpoint.TokenURL: %v", err)}
	}
	return nil
}

func (g oauth2ConfigGrant) refresher(_ *config, base http.RoundTripper) actors.RefreshFunc {
	client := tokenClient(base)
	return func(ctx context.Context, current Tokens) (Tokens, error) {
		if current.Refresh == "" {
			return Tokens{}, fmt.Errorf("%w: no refresh token to refresh with", ErrSessionExpired)
		}
		// A source seeded with no access token refreshes at once, over the engine's transport and
		// bounded by ctx (x/oauth2 takes its HTTP client from the context).
		ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
		ts := g.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: current.Refresh})
		return fromSource(ts, current, append(redact.BasicCredentials(g.cfg.ClientID, g.cfg.ClientSecret), g.cfg.ClientSecret)...)
	}
}

func (g oauth2ConfigGrant) tune(tc *actors.TokenConfig) {
	tc.RefreshHost = endpointHost(g.cfg.Endpoint.TokenURL)
}

// fromSource calls ts.Token and checks the token as a token endpoint's answer is checked. Its errors
// follow the engine's model; secrets (and the current tokens) are kept out of them.
func fromSource(ts oauth2.TokenSource, current Tokens, secrets ...string) (t Tokens, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine: the token source panicked: %v", r)
		}
	}()
	secrets = append(secrets, current.Access, current.Refresh)
	tok, err := ts.Token()
	if err != nil {
		return Tokens{}, sourceError(err, secrets)
	}
	if tok == nil {
		return Tokens{}, fmt.Errorf("%w: the token source returned no token", ErrMalformedTokenAnswer)
	}
	if typ := tok.Type(); typ != tokenwire.BearerType {
		return Tokens{}, &tokenwire.TokenTypeError{Type: redact.Clip(redact.Secrets(typ, secrets...), 32)}
	}
	if err := tokenwire.CheckAccessToken(tok.AccessToken); err != nil {
		return Tokens{}, err
	}
	if err := tokenwire.CheckRefreshToken(tok.RefreshToken); err != nil {
		return Tokens{}, err
	}
	return Tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, Expiry: tok.Expiry}, nil
}

// sourceError turns an x/oauth2 token endpoint error into a *TokenEndpointError, so that it is
// classified like the engine's own (invalid_grant ends the session, 5xx and 429 are retried) and
// carries no secret. Other errors are wrapped as they are: x/oauth2 formats transport errors with %v,
// so they cannot be told apart and count as a refresh failure that may pass.
func sourceError(err error, secrets []string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("engine: token source: %w", err)
	}
	ee := &TokenEndpointError{
		Status:      re.Response.StatusCode,
		Code:        redact.Clip(redact.Secrets(re.ErrorCode, secrets...), 64),
		Description: redact.Clip(redact.Secrets(re.ErrorDescription, secrets...), 256),
	}
	if d, ok := retry.ParseRetryAfter(re.Response.Header.Get("Retry-After"), timeNow()); ok {
		ee.RetryAfter = d
	}
	return ee
}
