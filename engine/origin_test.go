package engine_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// Credentials scoped to an origin: the engine's (token, secret header) and the caller's own.
const (
	originToken       = "tok-123"
	originSecretName  = "X-Api-Key"
	originSecretValue = "key-ENGINE"
	callerBasic       = "Basic Y2FsbGVyOnB3" // caller:pw
	callerProxy       = "Basic cHJveHk6cHc=" // proxy:pw
	callerCookie      = "session=caller-COOKIE"
	callerSecret      = "key-CALLER" // the caller's own header named like the secret header
)

// wireHop is what one request of a redirect chain carried on the wire, as the server read it (every
// value of a repeated header, joined by " | ").
type wireHop struct {
	Server             string // the name the answering server was started with
	Authorization      string
	ProxyAuthorization string
	Cookie             string
	Secret             string // the header named originSecretName
}

// apiHop is a hop to the API: the engine's token and secret header, and the caller's other
// credentials (the chain started at the API).
func apiHop(server string) wireHop {
	return wireHop{Server: server, Authorization: "Bearer " + originToken, ProxyAuthorization: callerProxy, Cookie: callerCookie, Secret: originSecretValue}
}

// engineHop is a hop to the API of a request that carried no credentials of the caller's.
func engineHop(server string) wireHop {
	return wireHop{Server: server, Authorization: "Bearer " + originToken, Secret: originSecretValue}
}

// callerHop is a hop at the origin the caller addressed: its own credentials, nothing of the engine's.
func callerHop(server string) wireHop {
	return wireHop{Server: server, Authorization: callerBasic, ProxyAuthorization: callerProxy, Cookie: callerCookie, Secret: callerSecret}
}

// bareHop is a hop that carries no credential at all.
func bareHop(server string) wireHop { return wireHop{Server: server} }

// hopRecorder notes every hop its servers see, in order, and redirects a request with ?next=URL there
// with the status in ?code=.
type hopRecorder struct {
	mu   sync.Mutex // guards hops
	hops []wireHop
}

func (rec *hopRecorder) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.hops = append(rec.hops, wireHop{
			Server:             name,
			Authorization:      strings.Join(r.Header.Values("Authorization"), " | "),
			ProxyAuthorization: strings.Join(r.Header.Values("Proxy-Authorization"), " | "),
			Cookie:             strings.Join(r.Header.Values("Cookie"), " | "),
			Secret:             strings.Join(r.Header.Values(originSecretName), " | "),
		})
		rec.mu.Unlock()
		if next := r.URL.Query().Get("next"); next != "" {
			code, err := strconv.Atoi(r.URL.Query().Get("code"))
			if err != nil {
				code = http.StatusFound
			}
			http.Redirect(w, r, next, code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
}

// seen returns the hops recorded so far.
func (rec *hopRecorder) seen() []wireHop {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]wireHop(nil), rec.hops...)
}

// start runs a loopback server named name that records into rec, until the test ends.
func (rec *hopRecorder) start(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(rec.handler(name))
	t.Cleanup(s.Close)
	return s
}

// check asserts that the chain made exactly the hops in want.
func (rec *hopRecorder) check(t *testing.T, want []wireHop, promise string) {
	t.Helper()
	got := rec.seen()
	require.Len(t, got, len(want), "hops of the chain: %+v", got)
	for i := range want {
		assert.Equal(t, want[i], got[i], "hop %d (%s): %s", i+1, want[i].Server, promise)
	}
}

// redirectChain is a URL that visits the given URLs in order, each redirecting to the next with code.
func redirectChain(code int, urls ...string) string {
	u := urls[len(urls)-1]
	for i := len(urls) - 2; i >= 0; i-- {
		u = urls[i] + "?" + url.Values{"code": {strconv.Itoa(code)}, "next": {u}}.Encode()
	}
	return u
}

// asLocalhost is s's URL with the host name localhost instead of 127.0.0.1: the same server under
// another host string, so another origin (and another domain for net/http).
func asLocalhost(s *httptest.Server) string {
	return strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
}

// originEngine builds an engine for the API at base with the secret header, authenticated with the
// fixed token originToken unless public, and closes it when the test ends.
func originEngine(t *testing.T, public bool, base string, opts ...engine.Option) *engine.Engine {
	t.Helper()
	all := append([]engine.Option{engine.WithBaseURL(base), engine.WithSecretHeader(originSecretName, originSecretValue)}, opts...)
	build := engine.NewPublic
	if !public {
		all = append(all, engine.WithTokens(engine.Tokens{Access: originToken}))
		build = engine.New
	}
	e, err := build(all...)
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

// sendAsCaller sends method target through e.Client() with all the caller's credentials set, and
// requires the chain to end in a 200. A POST carries a body that GetBody can replay.
func sendAsCaller(t *testing.T, e *engine.Engine, method, target string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"n":1}`)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, target, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", callerBasic)
	req.Header.Set("Proxy-Authorization", callerProxy)
	req.Header.Set("Cookie", callerCookie)
	req.Header.Set(originSecretName, callerSecret)
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// atPort is s's own URL: 127.0.0.1 on its port, another origin than any other server's.
func atPort(s *httptest.Server) string { return s.URL }

// hostBounce explains a failure of a chain that leaves the first host and comes back to it.
const hostBounce = "; net/http strips Authorization, Proxy-Authorization and Cookie for the rest of a chain " +
	"once it has left the first host (net/http/client.go: stripSensitiveHeaders is never reset), so back at the " +
	"first origin the engine puts the caller's Authorization and Proxy-Authorization back itself; cookies are left " +
	"to the client's jar (a cookie the server deleted on the way must not come back)"

// cookieLost is h after a detour to another host: net/http dropped the caller's cookie for the rest
// of the chain, and the engine does not bring cookies back.
func cookieLost(h wireHop) wireHop {
	h.Cookie = ""
	return h
}

// A redirect from the API to another host, or to the same host on another port, carries neither the
// engine's token and secret header nor any credential the caller set.
func TestRedirectAwayFromAPIOrigin(t *testing.T) {
	for _, away := range []struct {
		name string
		url  func(*httptest.Server) string
	}{
		{"another host", asLocalhost},
		{"another port", atPort},
	} {
		for _, via := range []struct {
			code   int
			method string
		}{
			{http.StatusFound, http.MethodGet},
			{http.StatusTemporaryRedirect, http.MethodPost},
		} {
			t.Run(away.name+"/"+strconv.Itoa(via.code), func(t *testing.T) {
				rec := &hopRecorder{}
				api, other := rec.start(t, "api"), rec.start(t, "other")
				e := originEngine(t, false, api.URL)

				sendAsCaller(t, e, via.method, redirectChain(via.code, api.URL+"/hop1", away.url(other)+"/hop2"))
				rec.check(t, []wireHop{apiHop("api"), bareHop("other")}, "credentials never leave the API's origin")
			})
		}
	}
}

// An origin added with WithOrigins receives the engine's token and secret header, though not the
// caller's credentials (it is not the chain's first origin), and a hop beyond it receives nothing.
func TestRedirectToExtraOrigin(t *testing.T) {
	rec := &hopRecorder{}
	api, extra, other := rec.start(t, "api"), rec.start(t, "extra"), rec.start(t, "other")
	e := originEngine(t, false, api.URL, engine.WithOrigins(extra.URL))

	sendAsCaller(t, e, http.MethodGet, redirectChain(http.StatusFound, api.URL+"/hop1", extra.URL+"/hop2", asLocalhost(other)+"/hop3"))
	rec.check(t, []wireHop{apiHop("api"), engineHop("extra"), bareHop("other")}, "every API origin gets the engine's credentials")
}

// https → http on the same host and port is another origin: the plaintext hop carries no token,
// no secret header and no credential of the caller's.
func TestRedirectHTTPSToHTTPSamePort(t *testing.T) {
	rec := &hopRecorder{}
	secure, plain := startSplitPort(t, rec)
	require.Equal(t, strings.TrimPrefix(secure.URL, "https://"), strings.TrimPrefix(plain.URL, "http://"), "one port")
	e := originEngine(t, false, secure.URL, engine.WithTransport(secure.Client().Transport))

	sendAsCaller(t, e, http.MethodGet, redirectChain(http.StatusFound, secure.URL+"/hop1", plain.URL+"/hop2"))
	rec.check(t, []wireHop{apiHop("https"), bareHop("http")}, "a downgrade to plaintext is another origin")
}

// A chain api → other → api carries the engine's token, the secret header and the caller's
// credentials on the API hops and nothing on the other one, through the raw client and the typed
// helpers (after a detour to another host the caller's cookie stays with the jar, see hostBounce).
func TestRedirectBackToAPIOrigin(t *testing.T) {
	for _, other := range []struct {
		name string
		url  func(*httptest.Server) string
		back wireHop // the third hop, back at the API
		note string  // added to the failure message
	}{
		{"another port", atPort, apiHop("api"), ""},
		{"another host", asLocalhost, cookieLost(apiHop("api")), hostBounce},
	} {
		t.Run(other.name+"/raw", func(t *testing.T) {
			rec := &hopRecorder{}
			api, away := rec.start(t, "api"), rec.start(t, "other")
			e := originEngine(t, false, api.URL)

			sendAsCaller(t, e, http.MethodGet, redirectChain(http.StatusTemporaryRedirect, api.URL+"/hop1", other.url(away)+"/hop2", api.URL+"/hop3"))
			rec.check(t, []wireHop{apiHop("api"), bareHop("other"), other.back},
				"credentials go to the API hops only, and the caller's are back once the chain is back at its first origin"+other.note)
		})
		t.Run(other.name+"/typed", func(t *testing.T) {
			rec := &hopRecorder{}
			api, away := rec.start(t, "api"), rec.start(t, "other")
			e := originEngine(t, false, api.URL)

			got, err := engine.GetJSON[map[string]bool](context.Background(), e,
				redirectChain(http.StatusFound, api.URL+"/hop1", other.url(away)+"/hop2", api.URL+"/hop3"))
			require.NoError(t, err)
			assert.True(t, got["ok"])
			rec.check(t, []wireHop{engineHop("api"), bareHop("other"), engineHop("api")}, "the token and secret go to the API hops only")
		})
	}
}

// Credentials the caller set on a request to a non-API origin stay with that origin: kept on the
// first hop, dropped on a detour to another origin (the API included), kept again back at the first
// origin (but for the cookie after another host, see hostBounce); on a public engine and on an
// authenticated one.
func TestRedirectKeepsCallerCredentialsAtFirstHopOrigin(t *testing.T) {
	for _, public := range []bool{true, false} {
		kind := map[bool]string{true: "public", false: "authenticated"}[public]
		// What the API sees on the detour: the engine's own credentials only.
		atAPI := engineHop("api")
		if public {
			atAPI = wireHop{Server: "api", Secret: originSecretValue}
		}
		for _, detour := range []struct {
			name string
			url  func(api, other *httptest.Server) string
			want wireHop
			back wireHop // the third hop, back at the first origin
			note string  // added to the failure message
		}{
			{"another port", func(_, other *httptest.Server) string { return other.URL }, bareHop("other"), callerHop("first"), ""},
			{"another host", func(_, other *httptest.Server) string { return asLocalhost(other) }, bareHop("other"), cookieLost(callerHop("first")), hostBounce},
			{"the API", func(api, _ *httptest.Server) string { return api.URL }, atAPI, callerHop("first"), ""},
		} {
			t.Run(kind+"/"+detour.name, func(t *testing.T) {
				rec := &hopRecorder{}
				api, first, other := rec.start(t, "api"), rec.start(t, "first"), rec.start(t, "other")
				e := originEngine(t, public, api.URL)

				sendAsCaller(t, e, http.MethodGet, redirectChain(http.StatusFound, first.URL+"/hop1", detour.url(api, other)+"/hop2", first.URL+"/hop3"))
				rec.check(t, []wireHop{callerHop("first"), detour.want, detour.back},
					"the caller's credentials belong to the origin of the chain's first request, and only to it"+detour.note)
			})
		}
	}
}

// WithSecretHeader rejects a name or value that is not a valid header, the Authorization header on
// an authenticated engine, and a public engine without a base URL; no error shows the value.
func TestSecretHeaderConfigErrors(t *testing.T) {
	const value = "hunter2-SECRET"
	for _, tc := range []struct {
		name   string
		public bool // NewPublic with only the secret header, else New with a base URL and a token
		secret engine.Option
	}{
		{"name with a space", false, engine.WithSecretHeader("Bad Header", value)},
		{"empty name", false, engine.WithSecretHeader("", value)},
		{"value with CRLF", false, engine.WithSecretHeader(originSecretName, value+"\r\nX-Injected: 1")},
		{"value with LF", false, engine.WithSecretHeader(originSecretName, value+"\nX-Injected: 1")},
		{"value with NUL", false, engine.WithSecretHeader(originSecretName, value+"\x00")},
		{"Authorization on New", false, engine.WithSecretHeader("Authorization", "Bearer "+value)},
		{"authorization on New, any case", false, engine.WithSecretHeader("authorization", "Bearer "+value)},
		{"NewPublic without WithBaseURL", true, engine.WithSecretHeader(originSecretName, value)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			var err error
			if tc.public {
				e, err = engine.NewPublic(tc.secret)
			} else {
				e, err = engine.New(engine.WithBaseURL("http://127.0.0.1:1"), engine.WithTokens(engine.Tokens{Access: originToken}), tc.secret)
			}
			if e != nil {
				closeEngine(t, e)
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, engine.ErrInvalidConfig)
			assert.NotContains(t, err.Error(), value, "the secret never appears in errors")
		})
	}

	// A fixed Authorization is what a public engine's secret header is for.
	e, err := engine.NewPublic(engine.WithBaseURL("http://127.0.0.1:1"), engine.WithSecretHeader("Authorization", "Bearer "+value))
	require.NoError(t, err)
	closeEngine(t, e)
}

// startSplitPort serves https and plain http on one loopback port: each connection goes to the TLS
// server if its first byte opens a TLS handshake record (0x16), else to the plaintext one. Both
// record into rec, as "https" and "http"; everything stops when the test ends.
func startSplitPort(t *testing.T, rec *hopRecorder) (secure, plain *httptest.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sn := &sniffer{ln: ln, tls: newChanListener(ln.Addr()), plain: newChanListener(ln.Addr())}
	sn.wg.Add(1)
	go sn.serve()

	secure = httptest.NewUnstartedServer(rec.handler("https"))
	require.NoError(t, secure.Listener.Close())
	secure.Listener = sn.tls
	secure.StartTLS()
	plain = httptest.NewUnstartedServer(rec.handler("http"))
	require.NoError(t, plain.Listener.Close())
	plain.Listener = sn.plain
	plain.Start()
	t.Cleanup(func() {
		_ = ln.Close() // no new connections; then the servers close theirs and their listeners
		secure.Close()
		plain.Close()
		sn.wg.Wait()
	})
	return secure, plain
}

// sniffer hands each accepted connection to one of two listeners by its first byte.
type sniffer struct {
	ln         net.Listener
	tls, plain *chanListener
	wg         sync.WaitGroup // counts the accept loop and the connections being routed
}

func (s *sniffer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.route(c)
	}
}

func (s *sniffer) route(c net.Conn) {
	defer s.wg.Done()
	first := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, first); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	to := s.plain
	if first[0] == 0x16 { // TLS record type handshake: a ClientHello
		to = s.tls
	}
	to.deliver(&prefixConn{Conn: c, prefix: first})
}

// chanListener is a net.Listener whose connections come from a channel.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// deliver hands c to Accept, or closes it if the listener is closed.
func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// prefixConn is a connection whose first bytes were already read: Read returns them first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// A cookie jar's own cookies for a hop's host still go there: only what the first request carried
// is held back on a hop that left its origin.
func TestRedirectKeepsTheJarsCookies(t *testing.T) {
	rec := &hopRecorder{}
	api := rec.start(t, "api")
	other := rec.start(t, "other")
	e := originEngine(t, false, api.URL)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	otherURL, _ := url.Parse(asLocalhost(other))
	jar.SetCookies(otherURL, []*http.Cookie{{Name: "sso", Value: "other-session"}})
	client := e.Client()
	client.Jar = jar

	req, err := http.NewRequest(http.MethodGet, redirectChain(http.StatusFound, api.URL, asLocalhost(other)), nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", callerCookie)
	resp, err := client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())

	hops := rec.seen()
	require.Len(t, hops, 2)
	assert.Contains(t, hops[0].Cookie, callerCookie)
	assert.Equal(t, "sso=other-session", hops[1].Cookie, "the jar's cookie for the other origin, and only it")
}

// With a cookie jar, net/http rebuilds the caller's cookies on a redirect whose answer set a cookie
// (quotes and spaces change, the cookie the answer replaced is left to the jar); they are still
// recognised by name and held back on another port.
func TestRedirectHoldsBackRebuiltCallerCookies(t *testing.T) {
	var mu sync.Mutex
	var atOther []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atOther = append(atOther, r.Header.Values("Cookie")...)
		mu.Unlock()
	}))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "theme", Value: "light"})
		http.Redirect(w, r, other.URL+"/land", http.StatusFound)
	}))
	defer api.Close()
	e := originEngine(t, false, api.URL)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := e.Client()
	client.Jar = jar

	req, err := http.NewRequest(http.MethodGet, api.URL+"/start", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", `sess="abc"; theme=dark`)
	resp, err := client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())

	mu.Lock()
	defer mu.Unlock()
	for _, c := range atOther {
		assert.NotContains(t, c, "sess", "the caller's cookie reached another origin")
	}
}

// A caller's API-key header of a common spelling (one of the shared credential list, not configured
// with WithSecretHeader) stays at the chain's first origin too: net/http forwards it on every
// redirect, since it knows only Authorization and cookies as credentials.
func TestRedirectDropsCallersAPIKeyHeaders(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = r.Header.Get("X-Api-Key") + "|" + r.Header.Get("X-Auth-Token")
			mu.Unlock()
			if next := r.URL.Query().Get("next"); next != "" {
				http.Redirect(w, r, next, http.StatusFound)
			}
		})
	}
	api, other := httptest.NewServer(record("api")), httptest.NewServer(record("other"))
	t.Cleanup(api.Close)
	t.Cleanup(other.Close)
	e, err := engine.NewPublic(engine.WithBaseURL(api.URL))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	req, err := http.NewRequest(http.MethodGet, api.URL+"/?next="+url.QueryEscape(other.URL+"/landed"), nil)
	require.NoError(t, err)
	req.Header.Set("X-Api-Key", "caller-api-key")
	req.Header.Set("X-Auth-Token", "caller-auth-token")
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "caller-api-key|caller-auth-token", seen["api"], "the first origin gets them")
	assert.Equal(t, "|", seen["other"], "another origin does not")
}
