package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// Tokens is one credential pair: the access token, the refresh token, and the access token's expiry
// (zero when unknown). Printing a Tokens value, with fmt or log/slog, never shows the secrets. Its
// fields (an alias hides them from go doc; the actors share the type, so it is defined there):
//
//	Access  string    // the access token, sent as "<Type> <Access>" in Authorization
//	Refresh string    // the refresh token that buys the next access token; "" when there is none
//	Expiry  time.Time // when Access expires; zero: unknown (valid until the API answers 401)
//	Type    string    // the Authorization scheme (the token answer's token_type); "" means Bearer
type Tokens = messages.Tokens

// Engine is a resilient API client: an http.RoundTripper and *http.Client that attach the access
// token to requests for the API's origin, refresh it once however many requests find it expired, and
// resend what a 401 interrupted. Create one with New (authenticated) or NewPublic, share it, and Close
// it when done. An Engine is safe for concurrent use.
type Engine struct {
	base      *url.URL // nil for a public engine without WithBaseURL
	maxErrors int64
	logger    *slog.Logger
	onError   func(context.Context, *Failure)

	id        string             // prefixes the names of the engine's actors in the shared system
	system    *actor.ActorSystem // the process's (actors.System)
	events    *eventstream.EventStream
	token     *actors.TokenHandle // the default family's; nil for a public engine
	sup       *actors.Supervisor
	inflight  *actors.Inflight
	requester *actors.Requester
	client    *http.Client    // the typed helpers' client
	transport *http.Transport // the default transport the engine made, closed by Close; nil if given
	subs      *subscribers
	fam       families // every family but the default one (family.go)

	closeOnce sync.Once
	closeErr  error
}

// New returns an authenticated engine: requests to the base URL's origin (and WithOrigins) carry
// the access token. It needs WithBaseURL and credentials (WithTokens, WithTokenStore or
// WithRefreshFunc); bad options give an error wrapping ErrInvalidConfig, never a panic.
func New(opts ...Option) (*Engine, error) { return build(false, opts) }

// NewPublic returns an engine for APIs that need no token: it never attaches a token and never
// refreshes, and rejects the token options. WithBaseURL is optional (typed helpers then need
// absolute URLs).
func NewPublic(opts ...Option) (*Engine, error) { return build(true, opts) }

// build is New and NewPublic: check the options, read the starting credentials, then start the
// engine's actors.
func build(public bool, opts []Option) (*Engine, error) {
	c := apply(opts)
	v, err := c.check(public)
	if err != nil {
		return nil, err
	}
	c.logger = slog.New(traceHandler{c.logger.Handler()})
	tel, err := telemetry.New(c.tel)
	if err != nil {
		return nil, configErr("WithMeterProvider", "creating the engine's instruments: %v", err)
	}
	var store TokenStore
	if !public {
		if store, err = c.tokenStore(); err != nil {
			return nil, err
		}
	}

	e := &Engine{base: v.base, maxErrors: c.maxErrorBytes, logger: c.logger, onError: c.onError, inflight: &actors.Inflight{}}
	base := c.transport
	if base == nil {
		t := defaultTransport()
		e.transport, base = t, t
	}
	if err := e.startRequestPath(&c, v, tel, base); err != nil {
		return nil, err
	}
	if !public {
		if err := e.startTokenActor(&c, store, tel, base); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// engineIDs numbers the engines of the process, to name their actors apart in the shared system.
var engineIDs atomic.Uint64

// startRequestPath starts the supervisor and the requester (with its cache), in the process's actor
// system; the engine's events get a stream of their own.
func (e *Engine) startRequestPath(c *config, v validated, tel *telemetry.T, base http.RoundTripper) error {
	e.id = "engine" + strconv.FormatUint(engineIDs.Add(1), 10)
	e.system, e.events = actors.System(), eventstream.NewEventStream()
	e.subs = &subscribers{system: e.system, stream: e.events, name: e.id + "/subscriber", onPanic: func(err error) { c.logger.Error("event subscriber panicked", "error", err) }}
	var err error
	e.sup, err = actors.SpawnSupervisor(e.system, actors.SupervisorConfig{Policy: v.policy, Events: publisher{stream: e.events}, Logger: c.logger, Name: e.id + "/supervisor"})
	if err != nil {
		return err
	}
	e.requester = &actors.Requester{Base: base, Origins: v.origins, Inflight: e.inflight, Supervisor: e.sup, Secrets: c.secrets, Tel: tel}
	e.requester.Finished = func(req *http.Request, resp *http.Response, err error, o actors.Outcome) (*http.Response, error) {
		return e.finished(nil, req, resp, err, o)
	}
	if c.cacheBytes > 0 {
		e.requester.Cache = actors.NewCaching(c.cacheBytes, c.secrets)
	}
	e.client = &http.Client{Transport: e.requester}
	return nil
}

// startTokenActor spawns the actor that owns the default family's credentials, and hands it to the
// requester. The actor's state is what store holds, on this start and on any restart. Its
// configuration is the template of every other family's (family.go).
func (e *Engine) startTokenActor(c *config, store TokenStore, tel *telemetry.T, base http.RoundTripper) error {
	tc := actors.TokenConfig{
		Store:                store,
		Refresh:              c.refresher(tel.Transport(base)),
		RefreshTimeout:       c.refreshTimeout,
		Skew:                 c.skew,
		Events:               publisher{stream: e.events},
		Logger:               c.logger,
		Supervisor:           e.sup,
		RefreshHost:          "", // a refresh function's: unknown
		RequiresRefreshToken: c.tokenEndpoint != "",
		Telemetry:            tel,
		Name:                 e.id + "/token",
	}
	if c.maxRefreshes > 0 {
		tc.Gate = make(chan struct{}, c.maxRefreshes)
	}
	if u, err := url.Parse(c.tokenEndpoint); err == nil && c.tokenEndpoint != "" {
		tc.RefreshHost = strings.ToLower(u.Host)
	}
	c.tuneGrant(&tc)
	raw := tc.Refresh // every family's refresh; in cluster mode, called under the family's lock
	if cf, ok := store.(*clusterFamily); ok {
		tc.Reload = cf.reload
		if raw != nil {
			cf.refresh, tc.Refresh = raw, cf.refreshFunc
		}
		// The actor starts from what New just read, as a family's does: a second read, after New
		// returned, could meet an outage of the coordinator and leave it without credentials.
		first, _ := cf.known()
		tc.Store = &primedStore{TokenStore: cf, first: &first}
	}
	life, endLife := context.WithCancel(context.Background())
	if cf, ok := store.(*clusterFamily); ok {
		cf.fam = &e.fam
	}
	h, err := actors.SpawnToken(e.system, tc)
	if err != nil {
		endLife()
		_ = e.sup.Stop(context.Background())
		return err
	}
	e.token, e.requester.Token = h, h
	e.fam.store, e.fam.idle, e.fam.template, e.fam.refresh, e.fam.cluster = c.families, c.familyIdle, tc, raw, c.cluster
	e.fam.template.Reload = nil // each family's is its own (family.go)
	e.fam.life, e.fam.endLife = life, endLife
	switch c.grant.(type) {
	case clientCredsGrant:
		e.fam.oneOnly = "WithClientCredentials"
	case tokenSourceGrant:
		e.fam.oneOnly = "WithTokenSource"
	}
	if e.fam.store == nil {
		e.fam.store = &MemoryFamilyStore{}
	}
	return nil
}

// defaultTransport makes the engine's own connection pool: a clone of http.DefaultTransport with
// room for many idle connections per host. A program may have replaced http.DefaultTransport with a
// wrapper (otelhttp, a recorder in tests): the engine then starts from net/http's documented
// defaults instead of using the wrapper, because it must own an *http.Transport to size its pool
// and to close its idle connections in Close. Such a wrapper can still be given to WithTransport.
func defaultTransport() *http.Transport {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok && dt != nil {
		t = dt.Clone()
	} else {
		t = &http.Transport{ // net/http's DefaultTransport, field by field
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	t.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	t.MaxIdleConns = 2 * DefaultMaxIdleConnsPerHost
	return t
}

// tokenStore is the store the default family's token actor loads from and saves to, checked to
// hold usable credentials: WithTokenStore's (seeded with WithTokens when it is empty), else
// WithFamilyStore's key "" (which may stay empty: an engine may serve only its families), else a
// MemoryStore holding WithTokens. The options of New only ever seed a store: the token actor's
// state, on every start, is what the store holds.
func (c *config) tokenStore() (TokenStore, error) {
	if c.cluster != nil {
		return c.clusterStore()
	}
	if c.store == nil && c.families != nil {
		c.store = familyStore{fs: c.families, key: ""}
	}
	if c.store == nil {
		s := &MemoryStore{}
		if c.tokens != nil {
			s.t = *c.tokens
		}
		return s, c.checkCredentials(s.t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.refreshTimeout)
	defer cancel()
	t, err := boundedLoad(ctx, c.store, c.refreshTimeout) // a store that ignores ctx must not hold New
	if err != nil {
		return nil, configErr("WithTokenStore", "loading tokens: %v", err)
	}
	if t.Access == "" && t.Refresh == "" && c.tokens != nil {
		t = *c.tokens
		if err := c.checkCredentials(t); err != nil {
			return nil, err
		}
		if err := bounded(ctx, c.refreshTimeout, func(ctx context.Context) error { return c.store.Save(ctx, t) }); err != nil {
			return nil, configErr("WithTokenStore", "saving the first tokens: %v", err)
		}
	}
	// The token actor starts from this read rather than a second one, which an outage of the store
	// just after New could fail (later starts, after a panic, read the store).
	primed := &primedStore{TokenStore: c.store, first: &t}
	if t.Access == "" && t.Refresh == "" && c.families != nil {
		return primed, nil // only families will be used, or SetTokens will come
	}
	return primed, c.checkCredentials(t)
}

// clusterStore is the default family's store in cluster mode: the Coordinator's key "", seeded with
// WithTokens if it holds nothing. It may stay empty (families only, or SetTokens to come).
func (c *config) clusterStore() (TokenStore, error) {
	cf := newClusterFamily(c.cluster, "", nil, c.refreshTimeout) // its refresh is set once the refresher is built
	ctx, cancel := context.WithTimeout(context.Background(), c.refreshTimeout)
	defer cancel()
	var t Tokens
	var err error
	if c.tokens != nil {
		if err = c.checkCredentials(*c.tokens); err != nil {
			return nil, err
		}
		err = bounded(ctx, c.refreshTimeout, func(ctx context.Context) (err error) { t, err = cf.seed(ctx, *c.tokens); return err })
	} else {
		err = bounded(ctx, c.refreshTimeout, func(ctx context.Context) (err error) { t, err = cf.Load(ctx); return err })
	}
	if err != nil { // an outage, not a configuration error: it wraps ErrClusterUnavailable
		if !errors.Is(err, ErrClusterUnavailable) {
			err = fmt.Errorf("%w: %w", ErrClusterUnavailable, err) // it panicked or did not answer
		}
		return nil, fmt.Errorf("engine: WithCluster: reading the default family: %w", err)
	}
	if t.Access == "" && t.Refresh == "" {
		return cf, nil
	}
	return cf, c.checkCredentials(t)
}

// refresher builds the refresh function: the user's, or the built-in format over the base transport.
func (c *config) refresher(base http.RoundTripper) actors.RefreshFunc {
	if c.refreshFunc != nil {
		return actors.RefreshFunc(c.refreshFunc)
	}
	if c.grant != nil {
		return c.grant.refresher(c, base)
	}
	if c.tokenEndpoint == "" {
		return nil
	}
	wc := tokenwire.Config{
		Endpoint: c.tokenEndpoint,
		Format:   c.format.wire(),
		Client: &http.Client{Transport: base, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a refresh token is never sent on to another URL
		}},
		MaxBytes:     c.maxTokenBytes,
		ClientID:     c.clientID,
		ClientSecret: c.clientSecret,
	}
	return func(ctx context.Context, current Tokens) (Tokens, error) {
		return tokenwire.Refresh(ctx, wc, current, timeNow())
	}
}

// Transport returns the engine as an http.RoundTripper, to give to any SDK or http.Client.
func (e *Engine) Transport() http.RoundTripper { return e.requester }

// Client returns a new *http.Client that sends through the engine (no overall timeout: bound each
// request with its context). Clients are cheap; change the returned one freely.
func (e *Engine) Client() *http.Client { return &http.Client{Transport: e.requester} }

// SetTokens replaces the credentials, typically after the user signed in again once the session
// expired. It ends the expired state, releases requests waiting for a token, and saves the new pair
// through the token actor, in order with the refreshes' saves, so the store never ends with an
// older pair than the one in force. It returns once they are in force and saved; if the save
// failed the error wraps ErrSaveFailed, the new tokens are in force all the same (see Health), and
// the save is retried in the background. It fails on a public engine, after Close, and with
// a *ConfigError for a pair that cannot be sent (a control character in a token, a Type that is not
// an HTTP token), which is then neither installed nor saved.
func (e *Engine) SetTokens(ctx context.Context, t Tokens) error {
	if e.token == nil {
		return configErr("SetTokens", "a public engine holds no tokens")
	}
	if e.inflight.Closed() {
		return ErrClosed
	}
	if err := actors.CheckTokens(t); err != nil {
		return configErr("SetTokens", "%s", err.Error()) // the text names no token
	}
	return e.token.Set(ctx, t)
}

// Health reports whether the TokenStore holds the credentials in force: nil, or the error of the
// last save, wrapping ErrSaveFailed, until a later save succeeds. While it is not nil the engine
// works from memory, and a restarted process would start from an older pair whose refresh token
// may be spent: alert on it. A public engine is always healthy.
func (e *Engine) Health() error {
	if e.token == nil {
		return nil
	}
	return e.token.Health()
}

// Subscribe calls fn with every event from now on (every type listed on Event: *TokenRefreshed,
// *SessionExpired, *TokensReplaced, *SaveFailed, *RetryScheduled, *RetryBudgetExhausted), of the
// default family and of every other family (their Family field names it; Family.Subscribe gets one
// family's), one at a time and in order, on a goroutine of the engine's. A slow fn delays only its
// own events; a panic in fn is logged and does not stop later events. Call the returned function
// to unsubscribe (events already queued are still delivered). After Close, Subscribe does nothing.
func (e *Engine) Subscribe(fn func(Event)) (unsubscribe func()) { return e.subs.add(fn, nil) }

// Close stops the engine. New requests fail with ErrClosed at once; requests parked for a token, in
// flight, or streaming a body are cancelled and fail with ErrClosed; subscribers get the events
// already queued; every actor and goroutine of the engine stops. A refresh call under way is let
// finish and its result saved (it makes no further call), and so is a SetTokens save: the store
// never keeps a refresh token the server already rotated. ctx bounds the whole wait: Close returns
// by its deadline, cutting a refresh call short if it must (a save already running keeps its own
// bounded context). A nil ctx waits without a bound, as context.Background would. Calling Close
// again returns the first call's result.
func (e *Engine) Close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background() // a deferred eng.Close(nil) must still close, not panic
	}
	e.closeOnce.Do(func() {
		errs := []error{e.inflight.Close(ctx)}
		if e.token != nil {
			errs = append(errs, e.token.Stop(ctx), e.fam.close(ctx))
		}
		errs = append(errs, e.sup.Stop(ctx))
		errs = append(errs, e.subs.close(ctx))
		if e.transport != nil {
			e.transport.CloseIdleConnections()
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
