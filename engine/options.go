package engine

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/internal/tokenwire"
)

// Option configures an Engine; give options to New or NewPublic. They are applied in order, and a
// later option of the same kind replaces an earlier one (WithOrigins and WithSecretHeader add up).
//
// One rule holds for every option: an option that is not given takes the default written in its doc;
// an option that is given means what it says, so WithMaxRetries(0) is no retry, WithCache(0) no
// cache and WithRefreshSkew(0) no refresh ahead of time. Where an option can be off, a negative value
// turns it off as well. A value that cannot mean anything (a nil transport, a zero refresh timeout)
// is a *ConfigError from New, never a panic. Fields of RetryPolicy follow the struct rule instead:
// a zero field takes its default.
type Option func(*config)

// Defaults of the options that have one: each applies when its option is not given.
const (
	DefaultRefreshTimeout      = 10 * time.Second // WithRefreshTimeout
	DefaultRefreshSkew         = 30 * time.Second // WithRefreshSkew
	DefaultMaxTokenBytes       = 64 << 10         // WithMaxTokenResponseBytes: 64 KiB
	DefaultMaxErrorBodyBytes   = 1 << 20          // WithMaxErrorBodyBytes: 1 MiB
	DefaultMaxIdleConnsPerHost = 1024             // idle connections per host of the default transport (WithTransport)
	DefaultCacheBytes          = 8 << 20          // WithCache: 8 MiB
)

// RefreshFormat names the protocol spoken with the token endpoint. Its zero value is no format.
type RefreshFormat int

const (
	// OAuth2Refresh is RFC 6749 §6: a form POST grant_type=refresh_token&refresh_token=…, answered with
	// JSON access_token, refresh_token and expires_in.
	OAuth2Refresh RefreshFormat = 1
	// JSONRefresh is POST {"refreshToken": …} answered with {"accessToken": …, "refreshToken": …};
	// the expiry comes from expiresIn if present, else from the access token's JWT exp claim.
	JSONRefresh RefreshFormat = 2
)

// String names the format: "oauth2", "json", or RefreshFormat(n) for an unknown one.
func (f RefreshFormat) String() string {
	if w := f.wire(); w.Valid() {
		return w.String()
	}
	return "RefreshFormat(" + strconv.Itoa(int(f)) + ")"
}

// wire maps the format to the wire package's; an unknown format maps to an invalid one.
func (f RefreshFormat) wire() tokenwire.Format {
	switch f {
	case OAuth2Refresh:
		return tokenwire.OAuth2
	case JSONRefresh:
		return tokenwire.JSON
	}
	return 0
}

// RefreshFunc obtains new credentials when the engine's built-in formats do not fit (another grant,
// a signing step, an SDK of the identity provider). ctx carries the refresh timeout. Return an error
// wrapping ErrSessionExpired (or a *TokenEndpointError with a 4xx status and Code invalid_grant)
// when the session cannot be saved; any other error is treated as passing and the credentials are kept. Returned tokens with an
// empty Refresh keep the previous refresh token.
type RefreshFunc func(ctx context.Context, current Tokens) (Tokens, error)

type config struct {
	errs []error // values no option can mean (nil transport, empty URL), reported by check

	baseURL        string
	baseURLGiven   bool // WithBaseURL was given, if only with ""
	origins        []string
	tokenEndpoint  string
	endpointGiven  bool // WithTokenEndpoint was given, if only with ""
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
	retryGiven     bool // WithRetryPolicy was given
	maxRetries     *int // WithMaxRetries, if given
	onError        func(context.Context, *Failure)
	secrets        []actors.SecretHeader
	cacheBytes     int64
	tel            telemetry.Config
	grant          grant         // WithClientCredentials, WithTokenSource or WithOAuth2Config (grants.go); nil: none
	families       FamilyStore   // WithFamilyStore; nil: a MemoryFamilyStore of the engine's
	maxRefreshes   int           // WithMaxConcurrentRefreshes; < 0: no bound
	familyIdle     time.Duration // WithFamilyIdleTimeout; < 0: never passivate
	cluster        Coordinator   // WithCluster; nil: this engine alone holds its families
}

// defaults is the configuration of an engine given no option: the one place where each option's
// default is set. The retry policy's defaults live in RetryPolicy.built.
func defaults() config {
	return config{
		refreshTimeout: DefaultRefreshTimeout,
		skew:           DefaultRefreshSkew,
		maxTokenBytes:  DefaultMaxTokenBytes,
		maxErrorBytes:  DefaultMaxErrorBodyBytes,
		cacheBytes:     DefaultCacheBytes,
		logger:         slog.New(slog.DiscardHandler),
		maxRefreshes:   DefaultMaxConcurrentRefreshes,
		familyIdle:     DefaultFamilyIdleTimeout,
	}
}

// apply starts from the defaults and applies opts in order; a nil option is recorded as an error.
func apply(opts []Option) config {
	c := defaults()
	for i, o := range opts {
		if o == nil {
			c.reject("Option", "option %d of %d is nil", i+1, len(opts))
			continue
		}
		o(&c)
	}
	return c
}

// reject records that an option was given a value it cannot mean.
func (c *config) reject(option, format string, args ...any) {
	c.errs = append(c.errs, configErr(option, format, args...))
}

// WithBaseURL sets the API's base URL (absolute http or https, without user:password): typed helpers
// resolve their paths against it, and its origin (scheme, host, port) is the one that receives the
// access token. Required by New; optional for NewPublic (typed helpers then need absolute URLs).
func WithBaseURL(u string) Option {
	return func(c *config) { c.baseURL, c.baseURLGiven = u, true }
}

// WithOrigins adds origins (absolute URLs; only scheme, host and port count) that also receive the
// access token, for an API served from more than one host. Default: only the base URL's origin.
func WithOrigins(urls ...string) Option {
	return func(c *config) { c.origins = append(c.origins, urls...) }
}

// WithTokenEndpoint sets where and how expired tokens are refreshed: format is OAuth2Refresh or
// JSONRefresh. It needs a refresh token (WithTokens or WithTokenStore), and an https endpoint when
// the base URL is https. Default: none; without it (and without WithRefreshFunc) a rejected or
// expired token ends the session.
func WithTokenEndpoint(endpoint string, format RefreshFormat) Option {
	return func(c *config) { c.tokenEndpoint, c.format, c.endpointGiven = endpoint, format, true }
}

// WithClientAuth authenticates refresh calls with HTTP Basic client credentials (RFC 6749 §2.3.1),
// as confidential OAuth2 clients must; both values must be non-empty, and it needs
// WithTokenEndpoint (a RefreshFunc authenticates itself). Default: no client
// authentication (a public client).
func WithClientAuth(clientID, clientSecret string) Option {
	return func(c *config) {
		if clientID == "" || clientSecret == "" {
			c.reject("WithClientAuth", "empty client ID or secret (a public client gives no WithClientAuth)")
		}
		c.clientID, c.clientSecret = clientID, clientSecret
	}
}

// WithRefreshFunc refreshes with f instead of a token endpoint; f must not be nil. Default: none.
func WithRefreshFunc(f RefreshFunc) Option {
	return func(c *config) {
		if f == nil {
			c.reject("WithRefreshFunc", "nil function")
		}
		c.refreshFunc = f
	}
}

// WithTokens sets the credentials to start with. A TokenStore that holds credentials wins over them
// (they are newer). Default: none.
func WithTokens(t Tokens) Option { return func(c *config) { c.tokens = &t } }

// WithTokenStore loads the starting credentials from s (in New) and saves every refreshed pair and
// every pair given to SetTokens; s must not be nil. Default: none (credentials live in memory only).
func WithTokenStore(s TokenStore) Option {
	return func(c *config) {
		if isNil(s) {
			c.reject("WithTokenStore", "nil store")
		}
		c.store = s
	}
}

// WithRefreshTimeout bounds one refresh call, however long requests are willing to wait; it must be
// positive. Default: DefaultRefreshTimeout (10 s).
func WithRefreshTimeout(d time.Duration) Option { return func(c *config) { c.refreshTimeout = d } }

// WithRefreshSkew makes the engine refresh a token this long before it expires, so steady traffic
// never meets a 401. For a short-lived token the lead is at most half its lifetime. Zero or a
// negative value turns refreshing ahead of time off: the token is refreshed when a request finds it
// expired or meets a 401. Default: DefaultRefreshSkew (30 s).
func WithRefreshSkew(d time.Duration) Option { return func(c *config) { c.skew = d } }

// WithMaxTokenResponseBytes bounds how much of a token endpoint answer is read; a larger answer
// fails the refresh. It must be positive. Default: DefaultMaxTokenBytes (64 KiB).
func WithMaxTokenResponseBytes(n int64) Option { return func(c *config) { c.maxTokenBytes = n } }

// WithMaxErrorBodyBytes bounds how much of an error response the typed helpers read to build an
// *APIError; zero reads none (the error then has the status only); negative is an error.
// Default: DefaultMaxErrorBodyBytes (1 MiB).
func WithMaxErrorBodyBytes(n int64) Option { return func(c *config) { c.maxErrorBytes = n } }

// WithTransport sets the http.RoundTripper that carries every attempt and refresh (TLS roots,
// proxies, dialers); rt must not be nil (nor a nil pointer in an interface). The engine does not
// close its connections. Default: a clone of http.DefaultTransport (or, if a program replaced it
// with a wrapper, a transport with net/http's default settings) with MaxIdleConnsPerHost raised to
// DefaultMaxIdleConnsPerHost (1,024: net/http's default of 2 makes a service calling one API from
// hundreds of goroutines open and close a connection for most requests; idle connections are only
// kept up to the concurrency actually reached), whose idle connections Close closes.
func WithTransport(rt http.RoundTripper) Option {
	return func(c *config) {
		if isNil(rt) {
			c.reject("WithTransport", "nil RoundTripper (%T)", rt)
		}
		c.transport = rt
	}
}

// WithCache bounds the ETag cache to maxBytes (bodies, headers and keys; one answer may take at
// most an eighth of it); zero or a negative maxBytes turns it off. GET answers carrying an ETag or
// Last-Modified are kept, unless Cache-Control: no-store, Vary: * or Set-Cookie forbid it; the next
// GET of the URL asks If-None-Match (If-Modified-Since), and a 304 reaches the caller as the stored
// 200 with the header X-Cache: revalidated. Entries are partitioned by a keyed hash of the
// credentials each request carried (the engine's token and secret headers, the caller's Authorization,
// Cookie, X-Api-Key and the like), and by the request headers the answer's Vary names, so one user's
// data is never served to another. Answers being read are copied within another maxBytes. A
// POST, PUT, PATCH or DELETE to a URL drops what is stored for it. A request that sets its own
// validator gets the server's 304 as it is. Default: DefaultCacheBytes (8 MiB).
func WithCache(maxBytes int64) Option { return func(c *config) { c.cacheBytes = maxBytes } }

// WithSecretHeader makes the engine send the header name: value (an API key, say) on every request
// and redirect hop whose scheme, host and port match the API's origins (WithBaseURL, WithOrigins),
// and never anywhere else; a header of that name that the caller set itself is treated like
// Authorization: dropped on a redirect hop that leaves the first request's origin. The value must not
// be empty and never appears in errors or logs. Give it once per header name. Allowed on public
// engines too. Default: none.
func WithSecretHeader(name, value string) Option {
	return func(c *config) {
		c.secrets = append(c.secrets, actors.SecretHeader{Name: http.CanonicalHeaderKey(name), Value: value})
	}
}

// WithLogger sets where the engine logs (refresh failures, session expiry, panics in subscribers).
// Records never contain a token; records about a request or a refresh carry its trace_id and
// span_id. (protoactor's own records are discarded: the actor system is shared by every engine of
// the process.) A nil l discards, as the default does. Default: logs are discarded.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
	}
}
