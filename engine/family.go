package engine

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/actors"
)

// Defaults of the families' options.
const (
	DefaultMaxConcurrentRefreshes = 64              // WithMaxConcurrentRefreshes
	DefaultFamilyIdleTimeout      = 5 * time.Minute // WithFamilyIdleTimeout
	MaxFamilyKeyBytes             = 1024            // the longest key Engine.Family accepts
)

// WithFamilyStore sets where the families' credentials are kept (see FamilyStore and Engine.Family).
// Default: a MemoryFamilyStore of the engine's, which forgets them at exit. Without WithTokens or
// WithTokenStore, the default family is the store's key "", and it may be empty: an engine may
// serve only its families.
func WithFamilyStore(s FamilyStore) Option {
	return func(c *config) {
		if isNil(s) {
			c.reject("WithFamilyStore", "nil store")
			return
		}
		c.families = s
	}
}

// WithMaxConcurrentRefreshes bounds the refresh calls in flight at once across every family of the
// engine (the default one included), so that a mass expiry of many families does not open as many
// connections to the token endpoint: a refresh waits for a slot, within its refresh timeout.
// Default DefaultMaxConcurrentRefreshes; a negative n: no bound; 0 is a *ConfigError.
func WithMaxConcurrentRefreshes(n int) Option { return func(c *config) { c.maxRefreshes = n } }

// WithFamilyIdleTimeout sets how long a family (Engine.Family) goes unused before its token actor is
// passivated: stopped, its memory released, to be started again from the FamilyStore on its next
// use, with the credentials (and the rotation) it saved. A family with a refresh under way, or
// whose last save failed, is not passivated. Default DefaultFamilyIdleTimeout; a negative d: never
// passivate; 0 is a *ConfigError. The default family is never passivated.
func WithFamilyIdleTimeout(d time.Duration) Option { return func(c *config) { c.familyIdle = d } }

// families are an engine's credential families other than its default one.
type families struct {
	store    FamilyStore
	idle     time.Duration      // see WithFamilyIdleTimeout; < 0: never
	template actors.TokenConfig // the default family's configuration, which every family copies
	refresh  actors.RefreshFunc // the refresh function, before any family's wrapping
	cluster  Coordinator        // WithCluster's; nil: store holds the families

	oneOnly     string             // the option whose tokens serve one family only; "": families work
	life        context.Context    // ends when the engine closes: bounds passivations
	endLife     context.CancelFunc // ends life
	m           sync.Map           // key → *Family
	seq         atomic.Uint64      // numbers the families' token actors, to name them apart
	mu          sync.Mutex         // guards closed, and passivating's Add against close's Wait
	closed      bool               // close began: no new passivation starts
	passivating sync.WaitGroup     // passivations under way, waited for by close
	commits     sync.WaitGroup     // cluster mode's background commits (clusterFamily.commitLater)
}

// Family is one credential family of an engine: the tokens of one tenant, customer connection or
// user, named by a key the application chooses. Its requests go through the engine's request path
// (retries, cache, telemetry, hooks) with the family's own token actor, which refreshes its tokens
// once per expiry however many of its requests need it, and never mixes them with another
// family's. The token actor is started on first use, loaded from the FamilyStore, and passivated
// after WithFamilyIdleTimeout without use. A Family is safe for concurrent use, and stays valid
// across passivations until the engine is closed.
type Family struct {
	e      *Engine
	key    string
	rq     actors.Requester // the engine's request path, with this family's credentials
	client *http.Client     // the typed helpers' client: through rq

	// lock serialises activation, passivation and close: a one-slot channel, so that a request
	// waiting for another's activation still gives up when its context ends.
	lock    chan struct{}
	closed  bool   // under lock: close ran, nothing is activated any more
	lastGen uint64 // under lock: the generation the last passivated token actor ended at
	live    atomic.Pointer[actors.TokenHandle]
	// active counts the calls that may use live (requests, SetTokens); touched says a call began or
	// ended since the last idle check. Passivation needs both at rest (see passivate).
	active  atomic.Int64
	touched atomic.Bool
}

// Family returns the family named key, creating it on first use (its token actor starts when it is
// first used). The same key gives the same *Family. Its credentials are what the FamilyStore holds
// under key, until SetTokens gives new ones. A family with none fails its requests to the API with
// ErrSessionExpired, except with WithRefreshFunc, which is then called with zero Tokens (and
// FamilyKey in its context) to get the family's first pair. key must be non-empty and at most
// MaxFamilyKeyBytes long; the default family is the Engine itself. It fails on a public engine,
// after Close, and with WithClientCredentials or WithTokenSource, whose one token serves the
// default family only (a *ConfigError).
func (e *Engine) Family(key string) (*Family, error) {
	if e.token == nil {
		return nil, configErr("Family", "a public engine holds no tokens")
	}
	if e.fam.oneOnly != "" {
		return nil, configErr("Family", "%s gives one token, for the default family only: families need tokens of their own (a token endpoint with refresh tokens, WithOAuth2Config, or WithRefreshFunc)", e.fam.oneOnly)
	}
	if key == "" || len(key) > MaxFamilyKeyBytes {
		return nil, configErr("Family", "a family key must have 1 to %d bytes, not %d (the default family is the Engine itself)", MaxFamilyKeyBytes, len(key))
	}
	if e.inflight.Closed() {
		return nil, ErrClosed
	}
	if f, ok := e.fam.m.Load(key); ok {
		return f.(*Family), nil
	}
	f := &Family{e: e, key: key, rq: *e.requester, lock: make(chan struct{}, 1)}
	f.rq.Token = (*familyToken)(f)
	f.rq.Finished = func(req *http.Request, resp *http.Response, err error, o actors.Outcome) (*http.Response, error) {
		return e.finished(f, req, resp, err, o)
	}
	f.client = &http.Client{Transport: f.Transport()}
	got, _ := e.fam.m.LoadOrStore(key, f)
	return got.(*Family), nil
}

// Key returns the family's key.
func (f *Family) Key() string { return f.key }

// Transport returns the family as an http.RoundTripper: requests to the API's origins carry this
// family's token.
func (f *Family) Transport() http.RoundTripper { return (*familyTransport)(f) }

// Client returns a new *http.Client that sends through the family (see Engine.Client).
func (f *Family) Client() *http.Client { return &http.Client{Transport: f.Transport()} }

// SetTokens replaces the family's credentials, as Engine.SetTokens does for the default family:
// typically once the customer connected (or connected again after SessionExpired). They are saved
// to the FamilyStore under the family's key before SetTokens returns.
func (f *Family) SetTokens(ctx context.Context, t Tokens) error {
	if err := actors.CheckTokens(t); err != nil {
		return configErr("SetTokens", "%s", err.Error()) // the text names no token
	}
	f.enter()
	defer f.leave()
	h, err := f.handle(ctx)
	if err != nil {
		return err
	}
	return h.Set(ctx, t)
}

// Health reports, as Engine.Health does, whether the FamilyStore holds the family's credentials in
// force. A passivated family is healthy: it is passivated only after its saves succeeded.
func (f *Family) Health() error {
	if h := f.live.Load(); h != nil {
		return h.Health()
	}
	return nil
}

// Subscribe calls fn with this family's events (*TokenRefreshed, *SessionExpired, *TokensReplaced,
// *SaveFailed whose Family is the key), as Engine.Subscribe does. The retry events are the engine's
// and go to Engine.Subscribe only.
func (f *Family) Subscribe(fn func(Event)) (unsubscribe func()) {
	return f.e.subs.add(fn, func(ev Event) bool {
		key, ok := eventFamily(ev)
		return ok && key == f.key
	})
}

// eventFamily is the family an event is about: its key ("" for the default family), and false for
// the retry events, which are about no family.
func eventFamily(ev Event) (string, bool) {
	switch ev := ev.(type) {
	case *TokenRefreshed:
		return ev.Family, true
	case *SessionExpired:
		return ev.Family, true
	case *TokensReplaced:
		return ev.Family, true
	case *SaveFailed:
		return ev.Family, true
	}
	return "", false
}

// header is the Authorization value the family's current token is sent with ("" when its token
// actor is passivated or holds none), to scrub from error texts.
func (f *Family) header() string {
	if h := f.live.Load(); h != nil {
		return h.Header()
	}
	return ""
}

// enter counts a call that may use the token actor; leave ends it. Both mark the family as used, so
// that an idle period counts from the end of the last call.
func (f *Family) enter() {
	f.active.Add(1)
	f.touch()
}

func (f *Family) leave() {
	f.touch()
	f.active.Add(-1)
}

func (f *Family) touch() {
	if !f.touched.Load() { // read first: most calls find it set and write nothing shared
		f.touched.Store(true)
	}
}

// familyTransport is a Family seen as an http.RoundTripper.
type familyTransport Family

// RoundTrip sends req through the engine's request path with the family's credentials. The call
// counts as active throughout, so the token actor it starts with is the one it ends with.
func (t *familyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f := (*Family)(t)
	f.enter()
	defer f.leave()
	return f.rq.RoundTrip(req)
}

// familyToken is a Family seen as the request path's actors.Credentials: it finds (or starts) the
// family's token actor. The request is active (familyTransport), so the actor stays the same
// between the calls of one request.
type familyToken Family

func (t *familyToken) AcquireAt(ctx context.Context, now time.Time) (actors.Grant, error) {
	h := t.live.Load()
	if h == nil { // not running: start it, which reads the store and may take a while
		var err error
		if h, err = (*Family)(t).activate(ctx); err != nil {
			return actors.Grant{}, err
		}
		now = time.Now()
	}
	return h.AcquireAt(ctx, now)
}

func (t *familyToken) Rejected(ctx context.Context, gen uint64) (actors.Grant, error) {
	h, err := (*Family)(t).handle(ctx)
	if err != nil {
		return actors.Grant{}, err
	}
	return h.Rejected(ctx, gen)
}

func (t *familyToken) ReportRejected(gen uint64) {
	if h := (*Family)(t).live.Load(); h != nil {
		h.ReportRejected(gen)
	}
}

// FamilyError is a failure to start a family's token actor: the FamilyStore could not be read (or
// the actor could not be spawned). Requests of the family fail with it, SetTokens returns it; the
// next call tries again. Its text does not name the family (a key may be personal data): Key does.
type FamilyError struct {
	Key string // the family's key
	Err error  // the store's error
}

// Error says that a family could not be started, and why (without the family's key).
func (e *FamilyError) Error() string {
	return "engine: starting a family: " + e.Err.Error()
}

// Unwrap returns the store's error.
func (e *FamilyError) Unwrap() error { return e.Err }

// familyKeyCtx is the context key under which a family's refresh calls carry its key.
type familyKeyCtx struct{}

// FamilyKey returns the key of the family whose refresh ctx belongs to, for a RefreshFunc that
// serves several families: ok is false for the default family's refreshes.
func FamilyKey(ctx context.Context) (key string, ok bool) {
	key, ok = ctx.Value(familyKeyCtx{}).(string)
	return key, ok
}

// primedStore is a family's store whose first Load returns what activate already read, so that a
// family's activation reads the store once. Later loads (a restart of the actor) read the store.
type primedStore struct {
	TokenStore
	mu    sync.Mutex // guards first
	first *Tokens
}

func (s *primedStore) Load(ctx context.Context) (Tokens, error) {
	s.mu.Lock()
	t := s.first
	s.first = nil
	s.mu.Unlock()
	if t != nil {
		return *t, nil
	}
	return s.TokenStore.Load(ctx)
}
