package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/internal/tokenwire"
)

// Option configures an Engine. Options are applied in order; a later one overrides an earlier one.
// Where an option is not given, the default written in its doc applies.
type Option func(*config)

// Defaults of the options that have one.
const (
	DefaultRefreshTimeout      = 10 * time.Second
	DefaultRefreshSkew         = 30 * time.Second
	DefaultMaxTokenBytes       = 64 << 10
	DefaultMaxErrorBodyBytes   = 1 << 20
	DefaultMaxIdleConnsPerHost = 1024
	DefaultCacheBytes          = 8 << 20
)

// RefreshFormat names the protocol spoken with the token endpoint.
type RefreshFormat int

const (
	// OAuth2Refresh is RFC 6749 §6: a form POST grant_type=refresh_token&refresh_token=…, answered with
	// JSON access_token, refresh_token and expires_in.
	OAuth2Refresh RefreshFormat = RefreshFormat(tokenwire.OAuth2)
	// JSONRefresh is POST {"refreshToken": …} answered with {"accessToken": …, "refreshToken": …};
	// the expiry comes from expiresIn if present, else from the access token's JWT exp claim.
	JSONRefresh RefreshFormat = RefreshFormat(tokenwire.JSON)
)

// String names the format.
func (f RefreshFormat) String() string { return tokenwire.Format(f).String() }

// RefreshFunc obtains new credentials when the engine's built-in formats do not fit (another grant,
// a signing step, an SDK of the identity provider). ctx carries the refresh timeout. Return an error
// wrapping ErrSessionExpired (or a *TokenEndpointError with a 4xx status) when the session cannot be
// saved; any other error is treated as passing and the credentials are kept. Returned tokens with an
// empty Refresh keep the previous refresh token.
type RefreshFunc func(ctx context.Context, current Tokens) (Tokens, error)

type config struct {
	baseURL        string
	origins        []string
	tokenEndpoint  string
	format         RefreshFormat
	refreshFunc    RefreshFunc
	tokens         *Tokens
	store          TokenStore
	refreshTimeout time.Duration
	skew           time.Duration
	maxTokenBytes  int64
	maxErrorBytes  int64
	transport      http.RoundTripper
	clientID       string
	clientSecret   string
	logger         *slog.Logger
	retry          RetryPolicy
	onError        func(context.Context, *Failure)
	secrets        []actors.SecretHeader
	cacheBytes     int64
	tel            telemetry.Config
}

// WithBaseURL sets the API's base URL: typed helpers resolve their paths against it, and its origin
// (scheme, host, port) is the one that receives the access token. Required by New; optional for
// NewPublic.
func WithBaseURL(u string) Option { return func(c *config) { c.baseURL = u } }

// WithOrigins adds origins (absolute URLs; only scheme, host and port count) that also receive the
// access token, for an API served from more than one host. Default: only the base URL's origin.
func WithOrigins(urls ...string) Option {
	return func(c *config) { c.origins = append(c.origins, urls...) }
}

// WithTokenEndpoint sets where and how expired tokens are refreshed: format is OAuth2Refresh or
// JSONRefresh. It needs a refresh token (WithTokens or WithTokenStore). Default: none; without it
// (and without WithRefreshFunc) a rejected or expired token ends the session.
func WithTokenEndpoint(endpoint string, format RefreshFormat) Option {
	return func(c *config) { c.tokenEndpoint, c.format = endpoint, format }
}

// WithClientAuth authenticates refresh calls with HTTP Basic client credentials (RFC 6749 §2.3.1),
// as confidential OAuth2 clients must. Default: no client authentication.
func WithClientAuth(clientID, clientSecret string) Option {
	return func(c *config) { c.clientID, c.clientSecret = clientID, clientSecret }
}

// WithRefreshFunc refreshes with f instead of a token endpoint. Default: none.
func WithRefreshFunc(f RefreshFunc) Option { return func(c *config) { c.refreshFunc = f } }

// WithTokens sets the credentials to start with. A TokenStore that holds credentials wins over them
// (they are newer). Default: none.
func WithTokens(t Tokens) Option { return func(c *config) { c.tokens = &t } }

// WithTokenStore loads the starting credentials from s (in New) and saves every refreshed pair and
// every pair given to SetTokens. Default: none (credentials live in memory only).
func WithTokenStore(s TokenStore) Option { return func(c *config) { c.store = s } }

// WithRefreshTimeout bounds one refresh call, however long requests are willing to wait.
// Default: DefaultRefreshTimeout (10 s).
func WithRefreshTimeout(d time.Duration) Option { return func(c *config) { c.refreshTimeout = d } }

// WithRefreshSkew makes the engine refresh a token this long before it expires, so steady traffic
// never meets a 401. For a short-lived token the lead is at most half its lifetime. Zero keeps the
// default, DefaultRefreshSkew (30 s); a negative value turns proactive refresh off.
func WithRefreshSkew(d time.Duration) Option { return func(c *config) { c.skew = d } }

// WithMaxTokenResponseBytes bounds how much of a token endpoint answer is read; a larger answer
// fails the refresh. Default: DefaultMaxTokenBytes (64 KiB).
func WithMaxTokenResponseBytes(n int64) Option { return func(c *config) { c.maxTokenBytes = n } }

// WithMaxErrorBodyBytes bounds how much of an error response the typed helpers read to build an
// *APIError. Default: DefaultMaxErrorBodyBytes (1 MiB).
func WithMaxErrorBodyBytes(n int64) Option { return func(c *config) { c.maxErrorBytes = n } }

// WithTransport sets the http.RoundTripper that carries every attempt and refresh (TLS roots,
// proxies, dialers). The engine does not close its connections. Default: a clone of
// http.DefaultTransport with MaxIdleConnsPerHost raised to DefaultMaxIdleConnsPerHost (1,024:
// net/http's default of 2 makes a service calling one API from hundreds of goroutines open and
// close a connection for most requests; idle connections are only kept up to the concurrency
// actually reached), whose idle connections Close closes.
func WithTransport(rt http.RoundTripper) Option { return func(c *config) { c.transport = rt } }

// WithCache bounds the ETag cache to maxBytes (bodies, headers and keys; one answer may take at
// most an eighth of it); a negative maxBytes turns it off. GET answers carrying an ETag or
// Last-Modified are kept, unless Cache-Control: no-store, Vary: * or Set-Cookie forbid it; the next
// GET of the URL asks If-None-Match (If-Modified-Since), and a 304 reaches the caller as the stored
// 200 with the header X-Cache: revalidated. Entries are partitioned by a keyed hash of the
// credentials each request carried (the engine's token or the caller's Authorization and Cookie), and
// by the request headers the answer's Vary names, so one user's data is never served to another. A
// POST, PUT, PATCH or DELETE to a URL drops what is stored for it. A request that sets its own
// validator gets the server's 304 as it is. Default: DefaultCacheBytes (8 MiB).
func WithCache(maxBytes int64) Option { return func(c *config) { c.cacheBytes = maxBytes } }

// WithSecretHeader makes the engine send the header name: value (an API key, say) on every request
// and redirect hop whose scheme, host and port match the API's origins (WithBaseURL, WithOrigins),
// and never anywhere else; a header of that name that the caller set itself is treated like
// Authorization: dropped on a redirect hop that leaves the first request's origin. The value never
// appears in errors or logs. Allowed on public engines too. Default: none.
func WithSecretHeader(name, value string) Option {
	return func(c *config) {
		c.secrets = append(c.secrets, actors.SecretHeader{Name: http.CanonicalHeaderKey(name), Value: value})
	}
}

// WithLogger sets where the engine logs (refresh failures, session expiry, panics in subscribers).
// Records never contain a token; records about a request or a refresh carry its trace_id and
// span_id. The actor system's own records go there too, from Warn up. Default: logs are discarded.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// ErrInvalidConfig is wrapped by every error New and NewPublic return for bad options.
var ErrInvalidConfig = errors.New("engine: invalid configuration")

// ConfigError says which option is wrong and why. It wraps ErrInvalidConfig.
type ConfigError struct {
	Option string
	Reason string
}

// Error names the option and what is wrong with it.
func (e *ConfigError) Error() string {
	return "engine: invalid configuration: " + e.Option + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

func configErr(option, format string, args ...any) error {
	return &ConfigError{Option: option, Reason: fmt.Sprintf(format, args...)}
}

// validated holds what New derives from a checked config.
type validated struct {
	base    *url.URL
	origins []actors.Origin
}

// check validates what both constructors share.
func (c *config) check(public bool) (validated, error) {
	var v validated
	var errs []error
	if c.baseURL == "" && !public {
		errs = append(errs, configErr("WithBaseURL", "required: it names the API that receives the token"))
	}
	if c.baseURL != "" {
		o, err := actors.ParseOrigin(c.baseURL)
		if err != nil {
			errs = append(errs, configErr("WithBaseURL", "%v", err))
		} else {
			v.base, _ = url.Parse(c.baseURL)
			v.origins = append(v.origins, o)
		}
	}
	for _, raw := range c.origins {
		o, err := actors.ParseOrigin(raw)
		if err != nil {
			errs = append(errs, configErr("WithOrigins", "%v", err))
			continue
		}
		v.origins = append(v.origins, o)
	}
	if c.refreshTimeout < 0 {
		errs = append(errs, configErr("WithRefreshTimeout", "negative duration %v", c.refreshTimeout))
	}
	for _, h := range c.secrets {
		if !validHeaderName(h.Name) || strings.ContainsAny(h.Value, "\r\n\x00") {
			errs = append(errs, configErr("WithSecretHeader", "%q is not a valid header name, or its value is not a valid header value", h.Name))
		} else if strings.EqualFold(h.Name, "Authorization") && !public {
			errs = append(errs, configErr("WithSecretHeader", "Authorization carries the engine's token; use NewPublic for a fixed one"))
		}
	}
	if len(c.secrets) > 0 && len(v.origins) == 0 {
		errs = append(errs, configErr("WithSecretHeader", "needs WithBaseURL: it names the origin that receives the header"))
	}
	if c.maxTokenBytes < 0 || c.maxErrorBytes < 0 {
		errs = append(errs, configErr("WithMax*Bytes", "negative limit"))
	}
	if public {
		for name, set := range map[string]bool{
			"WithTokens": c.tokens != nil, "WithTokenEndpoint": c.tokenEndpoint != "",
			"WithRefreshFunc": c.refreshFunc != nil, "WithTokenStore": c.store != nil,
			"WithOrigins": len(c.origins) > 0, "WithClientAuth": c.clientID != "",
		} {
			if set {
				errs = append(errs, configErr(name, "a public engine never attaches or refreshes tokens; use New"))
			}
		}
		return v, errors.Join(errs...)
	}
	if c.tokenEndpoint != "" {
		if !tokenwire.Format(c.format).Valid() {
			errs = append(errs, configErr("WithTokenEndpoint", "unknown refresh format %d: use OAuth2Refresh or JSONRefresh", int(c.format)))
		}
		if _, err := actors.ParseOrigin(c.tokenEndpoint); err != nil {
			errs = append(errs, configErr("WithTokenEndpoint", "%v", err))
		}
		if c.refreshFunc != nil {
			errs = append(errs, configErr("WithRefreshFunc", "give either a token endpoint or a refresh function, not both"))
		}
	}
	return v, errors.Join(errs...)
}

// checkCredentials validates the starting credentials once the store has been read.
func (c *config) checkCredentials(t Tokens) error {
	switch {
	case t.Access == "" && t.Refresh == "" && c.refreshFunc == nil:
		return configErr("WithTokens", "no credentials: give WithTokens, a WithTokenStore that holds some, or WithRefreshFunc")
	case c.tokenEndpoint != "" && t.Refresh == "":
		return configErr("WithTokenEndpoint", "a token endpoint needs a refresh token, and the starting tokens have none")
	}
	return nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
