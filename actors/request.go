package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/telemetry"
	"github.com/resilientclient/resilient/messages"
)

// Requester is the request path: an http.RoundTripper that runs each logical request as a small
// actor of its own. The request actor owns its state (attempt, token generation, body) on the
// caller's goroutine, speaks to the token actor only in messages (NeedToken, TokenRejected; the
// answer may be a Pending to park on until the refresh ends), and reads the token actor's published
// snapshot on the hot path.
//
// Why not a protoactor actor per request: spawning and stopping one costs several microseconds and
// tens of allocations (see bench/), an order of magnitude more than the whole token-attaching cost
// of golang.org/x/oauth2; the caller's goroutine already exists and already waits, so it serves as
// the request actor's thread, with a one-slot reply channel as its mailbox.
//
// A Requester is safe for concurrent use.
type Requester struct {
	Base     http.RoundTripper // sends attempts
	Token    *TokenHandle      // nil for a public client: never attaches a token
	Origins  []Origin          // only requests to these receive the token
	Inflight *Inflight         // tracks requests for Close
	// Secrets are attached to every request (and redirect hop) for Origins, and never elsewhere.
	Secrets []SecretHeader
	// Finished, if set, sees every logical request that failed (an error, or a final status ≥ 400)
	// before its caller does, with the number of physical sends it took; what it returns is what the
	// caller gets. It runs on the caller's goroutine.
	Finished func(req *http.Request, resp *http.Response, err error, o Outcome) (*http.Response, error)
	// Cache keeps GET answers with validators and revalidates them; nil: no caching.
	Cache *Caching
	// Supervisor applies the retry policy and keeps its shared state; nil: no retries (one attempt,
	// plus the resend after a 401).
	Supervisor *Supervisor
	// Tel traces and measures every logical request and every send; nil: no telemetry.
	Tel *telemetry.T
}

// RoundTrip runs one logical request: take a token (parking behind a refresh if one runs), send,
// on a 401 report the rejected generation and resend once with the token that replaces it, and on a
// retryable failure ask the supervisor, wait and try again (see retrying.go).
func (r *Requester) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := check(req); err != nil {
		if req != nil {
			closeBody(req)
		}
		return nil, err
	}
	c, err := r.Inflight.begin(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	defer r.Inflight.returned()
	now := time.Now()
	st := attemptState{start: now}
	ctx := r.Tel.StartLogical(c.ctx(), req, now, &st.tel)
	resp, err := r.logical(ctx, req, &st)
	c.release = st.release // the caller's answer is read under it: released when the call ends
	if err == nil {
		// The caller's request, not the copy that was sent: that one carries the engine's
		// credentials, and redirect hops must find the chain as the caller made it.
		resp.Request = req
	}
	if failed := err != nil || resp.StatusCode >= 400; failed || st.sends > 1 {
		if rep := ReportFrom(ctx); rep != nil {
			rep.Attempts = st.sends
		}
		if failed && r.Finished != nil {
			resp, err = r.finish(req, &st, resp, err, Outcome{Sends: st.sends, BudgetExhausted: st.exhausted})
		}
	}
	if err != nil {
		if c.closedByEngine() && !errors.Is(err, messages.ErrClosed) { // (before end: it may forget)
			err = fmt.Errorf("%w (%w)", messages.ErrClosed, err)
		}
		c.end()
		st.tel.End(ctx, st.keyed(req), nil, err, st.sends, time.Now())
		return nil, err
	}
	end := st.lastEnd // an answer that went through no hook ends when its send did
	if st.tel.Clocked() && (resp.StatusCode >= 400 || end.IsZero()) {
		end = time.Now()
	}
	st.tel.End(ctx, st.keyed(req), resp, nil, st.sends, end)
	if resp.Body == nil {
		c.end()
		return resp, nil
	}
	resp.Body = c.wrap(resp)
	return resp, nil
}

// attemptState is what one logical request remembers across its attempts.
type attemptState struct {
	sends     int            // physical sends so far, 401 resends included
	replayed  bool           // the one resend after a 401 has been used
	open      *http.Response // an answer being shown to the user's Decide, closed if it panics
	exhausted bool           // the retry budget refused a retry: the last answer is the answer
	noToken   bool           // the attempt failed for want of a token (the refresh applied the policy already)
	token     string         // the Authorization value last sent, cut out of a panic's text

	start   time.Time         // when the logical request began
	lastEnd time.Time         // when the last send's answer (or error) came back, if metrics need it
	sent    *http.Request     // the request as sent (with the engine's Idempotency-Key), if not req
	release func()            // ends the context of the send whose answer may be the caller's
	tel     telemetry.Logical // the logical request's span and measurements
}

// authValues is the Authorization header's value slice for one send, owned by that send alone: a
// downstream transport that edits header values in place (against the RoundTripper contract, but
// it happens) then spoils only its own send, never the token other requests send.
func authValues(auth string) []string { return []string{auth} }

// keyed is the request as its attempts were sent: with the Idempotency-Key the engine added.
func (st *attemptState) keyed(req *http.Request) *http.Request {
	if st.sent != nil {
		return st.sent
	}
	return req
}

// Outcome is what the request path knows of a finished logical request beyond its answer.
type Outcome struct {
	Sends           int  // physical sends, 401 resends included
	BudgetExhausted bool // the retry budget refused a retry that was due
}

// finish runs the Finished hook, turning a panic in it into ErrRequestPanicked.
func (r *Requester) finish(req *http.Request, st *attemptState, resp *http.Response, err error, o Outcome) (_ *http.Response, ferr error) {
	defer func() {
		if p := recover(); p != nil {
			if resp != nil {
				discard(resp)
			}
			ferr = r.panicked(req.Context(), req, st, p)
		}
	}()
	resp, err = r.Finished(req, resp, err, o)
	if err != nil && resp != nil {
		discard(resp)
		resp = nil
	}
	return resp, err
}

// logical runs one logical request. A panic anywhere in it (a user hook, the transport, a bug of
// ours) stops it: the caller gets ErrRequestPanicked and the supervisor logs the panic once.
func (r *Requester) logical(ctx context.Context, req *http.Request, st *attemptState) (resp *http.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			if st.open != nil {
				discard(st.open)
			}
			closeBody(req)
			resp, err = nil, r.panicked(ctx, req, st, p)
		}
	}()
	if r.Supervisor == nil {
		return r.attempt(ctx, req, req.Body, st)
	}
	return r.withRetries(ctx, req, st)
}

// attempt makes one attempt with body: a token, a send, and after a 401 (once per logical request)
// a resend with the token that replaces the rejected one.
func (r *Requester) attempt(ctx context.Context, req *http.Request, body io.ReadCloser, st *attemptState) (*http.Response, error) {
	own := st.tel.Injects() // the trace context goes into the header: it must be a copy
	if r.Token == nil || !r.forAPI(req.URL) {
		return r.exchange(ctx, r.prepare(req, ctx, body, nil, own), st)
	}
	g, err := r.Token.AcquireAt(ctx, time.Now())
	st.granted(ctx, &g, err)
	if g.Header != "" {
		st.token = g.Header
	}
	if err != nil {
		closeReader(body)
		st.noToken = true
		return nil, err
	}
	resp, err := r.exchange(ctx, r.prepare(req, ctx, body, authValues(g.Header), own), st)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || st.replayed {
		if err == nil && resp.StatusCode == http.StatusUnauthorized {
			r.Token.ReportRejected(g.Gen) // a second 401: the caller gets it, the token actor hears of it
		}
		return resp, err
	}
	if !replayable(req) {
		// The body is spent: hand the 401 to the caller, but let the token actor know.
		r.Token.ReportRejected(g.Gen)
		return resp, nil
	}
	discard(resp)
	st.replayed = true
	g, err = r.Token.Rejected(ctx, g.Gen)
	st.granted(ctx, &g, err)
	if g.Header != "" {
		st.token = g.Header
	}
	if err != nil {
		st.noToken = true
		return nil, err
	}
	body, err = rewind(req)
	if err != nil {
		return nil, fmt.Errorf("engine: replaying the request body: %w", err)
	}
	// At most one resend per logical request: a second 401 goes to the caller as it is. It is still
	// reported: the resend may have carried a token that was current but is rejected too (the first
	// attempt was stale), and only a report for the current generation starts a refresh.
	resp, err = r.exchange(ctx, r.prepare(req, ctx, body, authValues(g.Header), own), st)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		r.Token.ReportRejected(g.Gen)
	}
	return resp, err
}

// granted records what acquiring a token cost a request: the generation it got, and when it was
// parked behind a refresh, how long, how it ended, and the refresh's span (linked).
func (st *attemptState) granted(ctx context.Context, g *Grant, err error) {
	st.tel.Token(g.Gen)
	if !g.Parked() {
		return
	}
	outcome := "token"
	switch {
	case err != nil && ctx.Err() != nil:
		outcome = "cancelled"
	case err != nil:
		outcome = "error"
	}
	st.tel.Parked(g.ParkedAt, g.ReleasedAt, outcome, g.Refresh)
}

// send makes one physical send, traced as one CLIENT span that carries its trace context to the
// server. With an attempt timeout, the send must have its response headers within it; the body may
// take longer (it is bound to the logical request's context only).
func (r *Requester) send(ctx context.Context, req *http.Request, st *attemptState) (*http.Response, error) {
	st.sends++
	var sp telemetry.Send
	ctx = st.tel.StartSend(ctx, req, st.sends-1, time.Now(), &sp)
	if sp.Rebind() {
		req = req.WithContext(ctx)
	}
	st.tel.Inject(ctx, req.Header) // if it injects, prepare gave this request a header map of its own
	ended := false
	defer func() {
		if !ended { // the transport panicked: the span still ends (the panic goes on to logical)
			sp.End(ctx, req, nil, errTransportPanicked, time.Now())
		}
	}()
	resp, err, raw, release := r.roundTrip(ctx, req)
	if st.tel.Clocked() { // else nothing needs the time of the answer (a retry reads the clock)
		st.lastEnd = time.Now()
	}
	ended = true
	sp.End(ctx, req, resp, raw, st.lastEnd)
	st.keep(release)
	return resp, err
}

// errTransportPanicked is what a send span records when the transport panicked.
var errTransportPanicked = errors.New("engine: the transport panicked")

// keep holds release, the end of the context of the send whose answer may be the caller's (its
// body is read under it), releasing the previous one's: only one answer of a logical request is
// ever the caller's. The logical request's end calls the last one.
func (st *attemptState) keep(release func()) {
	if st.release != nil {
		st.release()
	}
	st.release = release
}

// roundTrip sends req under the attempt timeout, if any. raw is the transport's own error, err what
// the request path makes of it; release, when not nil, ends the attempt's own context once its
// answer's body is done with.
func (r *Requester) roundTrip(ctx context.Context, req *http.Request) (resp *http.Response, err, raw error, release func()) {
	d := time.Duration(0)
	if r.Supervisor != nil {
		d = r.Supervisor.policy.AttemptTimeout
	}
	if d <= 0 {
		resp, err := r.Base.RoundTrip(req)
		raw = err
		if err != nil && ctx.Err() == nil {
			err = &networkError{err: err}
		}
		return resp, err, raw, nil
	}
	actx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d, func() { cancel(errAttemptTimeout) })
	resp, err = r.Base.RoundTrip(req.WithContext(actx))
	raw = err
	if t.Stop() {
		if err != nil {
			cancel(nil)
			if ctx.Err() == nil {
				err = &networkError{err: err}
			}
			return resp, err, raw, nil
		}
		// On success actx lives as long as the body, which is read under it: the logical request
		// releases it when it ends (the shared context of a request that cannot be cancelled
		// would otherwise keep it until Close).
		return resp, err, raw, func() { cancel(nil) }
	}
	// The timer fired: this attempt is over, whatever came back.
	if err == nil {
		discard(resp)
	}
	cancel(nil)
	if ctx.Err() != nil {
		return nil, ctxErr(ctx), ctxErr(ctx), nil
	}
	err = &AttemptTimeoutError{After: d}
	return nil, err, err, nil
}

// errAttemptTimeout is the cause an attempt's context ends with when its timeout fires.
var errAttemptTimeout = errors.New("engine: attempt timed out")

// AttemptTimeoutError: an attempt had no response headers within the policy's AttemptTimeout. It is a
// net.Error whose Timeout is true, so the retry decision treats it as any other timeout, and
// errors.Is finds messages.ErrAttemptTimeout in it.
type AttemptTimeoutError struct {
	After time.Duration
}

// Error says the attempt timed out, and after how long.
func (e *AttemptTimeoutError) Error() string {
	return "engine: no response headers within the attempt timeout of " + e.After.String()
}

// Timeout is true: the attempt timed out.
func (e *AttemptTimeoutError) Timeout() bool { return true }

// Temporary is true: another attempt may succeed. (Part of net.Error.)
func (e *AttemptTimeoutError) Temporary() bool { return true }

// Is makes errors.Is(err, messages.ErrAttemptTimeout) and errors.Is(err, messages.ErrTimeout) true.
func (e *AttemptTimeoutError) Is(target error) bool {
	return target == messages.ErrAttemptTimeout || target == messages.ErrTimeout
}

// networkError marks an error of the underlying transport (nothing or no whole answer came back):
// errors.Is finds messages.ErrNetwork in it, and messages.ErrTimeout when it is a timeout. Its text
// is the transport's own; errors.As still finds what it wraps (*net.OpError, syscall errors, ...).
type networkError struct {
	err error
}

func (e *networkError) Error() string { return e.err.Error() }
func (e *networkError) Unwrap() error { return e.err }
func (e *networkError) Is(target error) bool {
	if target == messages.ErrNetwork {
		return true
	}
	var ne net.Error
	return target == messages.ErrTimeout && errors.As(e.err, &ne) && ne.Timeout()
}

func (r *Requester) forAPI(u *url.URL) bool {
	for _, o := range r.Origins {
		if o.Matches(u) {
			return true
		}
	}
	return false
}

// prepare is req bound to ctx with body, and with the headers this hop may carry: on a hop to an
// API origin the engine's token (auth, unless empty) and secret headers; on a redirect hop that left
// the first request's origin, none of the caller's credentials (Authorization, Proxy-Authorization,
// the configured secret header names, and the cookies the first request carried; a cookie jar's
// other cookies for the hop stay); on a hop back at the first origin, the caller's Authorization and
// the like again. net/http copies credentials to any redirect within the same domain, whatever the
// port or scheme; here they stay at their exact origin. The caller's request is not modified: a new
// header map is made when anything changes, or when own asks for one (its value slices are shared,
// read-only).
func (r *Requester) prepare(req *http.Request, ctx context.Context, body io.ReadCloser, auth []string, own bool) *http.Request {
	r2 := req.WithContext(ctx)
	r2.Body = body
	api := len(auth) > 0 || (len(r.Secrets) > 0 && r.forAPI(req.URL))
	var first *http.Request // the request that started a redirect chain, when this is a later hop
	crossed := false
	if req.Response != nil {
		first = firstOfChain(req)
		crossed = originOf(first.URL) != originOf(req.URL)
	}
	if !api && first == nil && !own {
		return r2
	}
	h := make(http.Header, len(req.Header)+1+len(r.Secrets))
	for k, v := range req.Header {
		if api && r.replaced(k, len(auth) > 0) {
			continue
		}
		if crossed && r.credential(k) {
			if !strings.EqualFold(k, "Cookie") {
				continue // Authorization and the like never go past the first origin
			}
			// Drop every cookie the first request carried, by name (net/http copies them within a
			// domain, whatever the port or scheme, and may re-quote them); keep the others, which
			// the client's cookie jar chose for this hop.
			if v = cookiesNotIn(first.Header, v); len(v) == 0 {
				continue
			}
		}
		h[k] = v
	}
	if first != nil && !crossed {
		// Back at the first origin: the caller's Authorization (and the like) were meant for it, and
		// net/http stops sending them for the rest of a chain once it visited another host. Cookies
		// are not restored: the jar, if any, speaks for them, and a cookie a server deleted on the
		// way must not come back.
		for k, v := range first.Header {
			if r.credential(k) && !strings.EqualFold(k, "Cookie") && !hasKey(h, k) && !(api && r.replaced(k, len(auth) > 0)) {
				h[k] = v
			}
		}
	}
	if len(auth) > 0 {
		h["Authorization"] = auth
	}
	if api {
		for _, s := range r.Secrets {
			h[s.Name] = []string{s.Value}
		}
	}
	r2.Header = h
	return r2
}

// replaced reports whether the engine sets the header named k itself on an API hop (Authorization
// when it attaches a token, and the secret headers), so the caller's value, in any spelling, goes.
func (r *Requester) replaced(k string, token bool) bool {
	if token && strings.EqualFold(k, "Authorization") {
		return true
	}
	for _, s := range r.Secrets {
		if strings.EqualFold(k, s.Name) {
			return true
		}
	}
	return false
}

// credential reports whether the header named k carries the caller's credentials.
func (r *Requester) credential(k string) bool {
	for _, name := range credentialHeaders {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	for _, s := range r.Secrets {
		if strings.EqualFold(k, s.Name) {
			return true
		}
	}
	return false
}

var credentialHeaders = [...]string{"Authorization", "Proxy-Authorization", "Cookie", "Cookie2"}

// cookiesNotIn is the Cookie header values vals without the cookies whose names appear in first's
// Cookie header (in any spelling of its key).
func cookiesNotIn(first http.Header, vals []string) []string {
	names := map[string]bool{}
	for k, fv := range first {
		if strings.EqualFold(k, "Cookie") {
			for _, v := range fv {
				for _, pair := range strings.Split(v, ";") {
					names[cookieName(pair)] = true
				}
			}
		}
	}
	if len(names) == 0 {
		return vals
	}
	var kept []string
	for _, v := range vals {
		var own []string
		for _, pair := range strings.Split(v, ";") {
			if name := cookieName(pair); name != "" && !names[name] {
				own = append(own, strings.TrimSpace(pair))
			}
		}
		if len(own) > 0 {
			kept = append(kept, strings.Join(own, "; "))
		}
	}
	return kept
}

// cookieName is the name of one name=value pair of a Cookie header.
func cookieName(pair string) string {
	name, _, _ := strings.Cut(pair, "=")
	return strings.TrimSpace(name)
}

// hasKey reports whether h has the header named k, in any spelling.
func hasKey(h http.Header, k string) bool {
	for hk := range h {
		if strings.EqualFold(hk, k) {
			return true
		}
	}
	return false
}

// firstOfChain is the request that started the redirect chain req belongs to.
func firstOfChain(req *http.Request) *http.Request {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first
}

// SecretHeader is a header the engine attaches to requests for the API's origins only, such as an
// API key. Its value is never logged.
type SecretHeader struct {
	Name  string // canonical form
	Value string
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (io.ReadCloser, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, nil
	}
	return req.GetBody()
}

// discard closes an answer we will not return. It first reads what of its body has already
// arrived, so that its connection can be reused, but at most drainBytes and for at most drainWait:
// a server that sends a few bytes of an error and stalls must not hold the retry (and the caller's
// deadline) hostage; closing the body early only costs the connection.
func discard(resp *http.Response) {
	t := time.AfterFunc(drainWait, func() { _ = resp.Body.Close() })
	_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
	if t.Stop() {
		_ = resp.Body.Close()
	} // else the timer closed it
}

// What discard reads of an unwanted body before it gives up on the connection: an error page
// that has already arrived (the common case) takes well under either bound.
const (
	drainBytes = 64 << 10
	drainWait  = 50 * time.Millisecond
)

func closeBody(req *http.Request) { closeReader(req.Body) }

func closeReader(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// Origin is a scheme, host and port: the unit that credentials are scoped to.
type Origin struct {
	Scheme string // lower case
	Host   string // lower case, without brackets for IPv6
	Port   string // explicit; the scheme's default when the URL had none
}

// ParseOrigin reads the origin of an absolute http or https URL.
func ParseOrigin(raw string) (Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Origin{}, err
	}
	o := originOf(u)
	if o.Scheme != "http" && o.Scheme != "https" {
		return Origin{}, fmt.Errorf("%q is not an absolute http or https URL", raw)
	}
	if o.Host == "" {
		return Origin{}, fmt.Errorf("%q has no host", raw)
	}
	return o, nil
}

func originOf(u *url.URL) Origin {
	scheme := strings.ToLower(u.Scheme)
	return Origin{Scheme: scheme, Host: strings.ToLower(u.Hostname()), Port: portOf(scheme, u.Port())}
}

func portOf(scheme, port string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Matches reports whether u belongs to the origin. It allocates nothing.
func (o Origin) Matches(u *url.URL) bool {
	if h := u.Host; u.Scheme == o.Scheme && len(h) >= len(o.Host) && h[:len(o.Host)] == o.Host {
		// The common spellings, compared exactly: host alone on the scheme's port, or host:port.
		if rest := h[len(o.Host):]; rest == "" {
			if o.Port == portOf(o.Scheme, "") {
				return true
			}
		} else if rest[0] == ':' && rest[1:] == o.Port {
			return true
		}
	}
	if !strings.EqualFold(u.Scheme, o.Scheme) {
		return false
	}
	host, port := splitHostPort(u.Host)
	return strings.EqualFold(host, o.Host) && portOf(o.Scheme, port) == o.Port
}

// splitHostPort is url.URL's Hostname and Port without their allocations.
func splitHostPort(hostport string) (host, port string) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, port
}

// String is scheme://host:port.
func (o Origin) String() string {
	return o.Scheme + "://" + net.JoinHostPort(o.Host, o.Port)
}
