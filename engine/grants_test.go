package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// me asks the fake API who the token belongs to.
func me(ctx context.Context, e *engine.Engine) (string, error) {
	m, err := engine.GetJSON[map[string]string](ctx, e, "/me")
	return m["user"], err
}

// concurrentMe runs n concurrent GET /me and returns how many failed (and the first error).
func concurrentMe(ctx context.Context, e *engine.Engine, n int, want string) (int64, error) {
	var failed atomic.Int64
	var first atomic.Pointer[error]
	fanOut(n, func(int) {
		user, err := me(ctx, e)
		if err == nil && user != want {
			err = fmt.Errorf("user %q, want %q", user, want)
		}
		if err != nil {
			failed.Add(1)
			first.CompareAndSwap(nil, &err)
		}
	})
	if p := first.Load(); p != nil {
		return failed.Load(), *p
	}
	return failed.Load(), nil
}

// expiringTTL is the lifetime of tokens in the tests that wait for an expiry: long enough for a
// phase of 1,000 concurrent requests under the race detector on a loaded machine to end well
// inside it, so that each phase meets exactly the expiry it was meant to.
const expiringTTL = 4 * time.Second

// sleepPast waits until the engine's current token has expired (its expiry as the engine knows it).
func sleepPast(t *testing.T, e *engine.Engine) {
	t.Helper()
	c, err := e.Credential(context.Background())
	require.NoError(t, err)
	require.False(t, c.Expiry.IsZero(), "the token's expiry is known")
	time.Sleep(time.Until(c.Expiry) + 20*time.Millisecond)
}

// Client credentials: 1,000 concurrent requests on an engine with no token yet make one fetch, and
// 1,000 more once that token has expired make one more; each client authentication method is what
// the server checked.
func TestClientCredentialsOneFetchPerExpiry(t *testing.T) {
	for _, method := range []engine.ClientAuthMethod{engine.ClientSecretBasic, engine.ClientSecretPost} {
		t.Run(method.String(), func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{AccessTTL: expiringTTL})
			srv.RegisterClient("svc", "client-secret-value", fakeapi.ClientAuth(method))
			e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithRefreshSkew(-1),
				engine.WithClientCredentials(engine.ClientCredentials{
					TokenURL: srv.OAuth2TokenURL(), ClientID: "svc", ClientSecret: "client-secret-value",
					AuthMethod: method, Scopes: []string{"orders:read", "orders:write"}, Resources: []string{"https://api.example"},
				}))
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			failed, err := concurrentMe(ctx, e, 1000, "svc")
			require.Zero(t, failed, "first error: %v", err)
			assert.EqualValues(t, 1, srv.ClientCredentialsCalls(), "one fetch for 1,000 requests with no token")
			sleepPast(t, e)
			failed, err = concurrentMe(ctx, e, 1000, "svc")
			require.Zero(t, failed, "first error: %v", err)
			assert.EqualValues(t, 2, srv.ClientCredentialsCalls(), "one fetch across the expiry")
			assert.Zero(t, srv.Stats().Unauthorized, "no expired token was sent")
			for _, g := range srv.ClientGrants() {
				assert.Equal(t, fakeapi.ClientGrant{ClientID: "svc", Auth: fakeapi.ClientAuth(method), Scope: "orders:read orders:write",
					Resources: []string{"https://api.example"}}, g)
			}
		})
	}
}

// A 401 storm on a client-credentials token (the server revoked it before its expiry) makes one fetch.
func TestClientCredentials401StormOneFetch(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	srv.RegisterClient("svc", "client-secret-value", fakeapi.ClientSecretBasic)
	e := clientCredsEngine(t, srv, engine.ClientCredentials{ClientID: "svc", ClientSecret: "client-secret-value"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := me(ctx, e)
	require.NoError(t, err)
	for round := int64(1); round <= 2; round++ {
		srv.ExpireAccessTokens()
		failed, err := concurrentMe(ctx, e, 1000, "svc")
		require.Zero(t, failed, "first error: %v", err)
		assert.Equal(t, 1+round, srv.ClientCredentialsCalls(), "one fetch per storm")
	}
}

// A wrong client secret: the waiting requests share the token endpoint's calls, each gets a
// typed error naming invalid_client (and not the secret). invalid_client is no invalid_grant: the
// session stays, and a later request asks the endpoint again.
func TestClientCredentialsWrongSecretNoStorm(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	srv.RegisterClient("svc", "the-right-secret", fakeapi.ClientSecretPost)
	e := clientCredsEngine(t, srv, engine.ClientCredentials{ClientID: "svc", ClientSecret: "a-wrong-secret", AuthMethod: engine.ClientSecretPost})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var typed atomic.Int64
	fanOut(1000, func(int) {
		_, err := me(ctx, e)
		var ee *engine.TokenEndpointError
		if errors.Is(err, engine.ErrRefreshFailed) && errors.As(err, &ee) && ee.Code == "invalid_client" && ee.Status == http.StatusUnauthorized {
			typed.Add(1)
		}
	})
	assert.EqualValues(t, 1000, typed.Load(), "every request gets the typed error")
	// Requests that arrive after a failed fetch start the next one; those waiting share it.
	calls := srv.ClientCredentialsCalls()
	assert.Less(t, calls, int64(100), "fetches are shared, no retry storm")
	_, err := me(ctx, e)
	require.ErrorIs(t, err, engine.ErrRefreshFailed)
	assert.NotErrorIs(t, err, engine.ErrSessionExpired)
	assert.NotContains(t, err.Error(), "a-wrong-secret")
	assert.Equal(t, calls+1, srv.ClientCredentialsCalls(), "a later request asks again")
	assert.Zero(t, srv.Stats().APIRequests, "no request reached the API without a token")
}

// A client-credentials fetch that fails transiently (503) is retried while the requests wait.
func TestClientCredentialsTransientFailureRetried(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	srv.RegisterClient("svc", "client-secret-value", fakeapi.ClientSecretBasic)
	srv.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`, 1)
	e := clientCredsEngine(t, srv, engine.ClientCredentials{ClientID: "svc", ClientSecret: "client-secret-value"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failed, err := concurrentMe(ctx, e, 100, "svc")
	require.Zero(t, failed, "first error: %v", err)
	assert.EqualValues(t, 2, srv.Stats().RefreshCalls, "the 503, then the fetch that worked")
	assert.EqualValues(t, 1, srv.ClientTokens())
}

// closingClient is an HTTP client for x/oauth2 with its own transport, closed after the test (the
// default transport's idle connections would outlive it and trip goleak).
func closingClient(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// oauth2Config is an x/oauth2 config for the fake API's RFC 6749 endpoint.
func oauth2Config(srv *fakeapi.Server) *oauth2.Config {
	return &oauth2.Config{ClientID: "app", Endpoint: oauth2.Endpoint{TokenURL: srv.OAuth2TokenURL(), AuthStyle: oauth2.AuthStyleInParams}}
}

func oauth2Token(t engine.Tokens) *oauth2.Token {
	return &oauth2.Token{AccessToken: t.Access, RefreshToken: t.Refresh, Expiry: t.Expiry, TokenType: "Bearer"}
}

// countingSource counts the calls the engine makes to a TokenSource.
type countingSource struct {
	ts    oauth2.TokenSource
	calls atomic.Int64
}

func (c *countingSource) Token() (*oauth2.Token, error) { c.calls.Add(1); return c.ts.Token() }

// An x/oauth2 refresh config's TokenSource behind the engine: 1,000 concurrent requests across an
// expiry make one refresh, and the rotating refresh token is never replayed.
func TestTokenSourceFromOAuth2ConfigAcrossExpiry(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: expiringTTL})
	octx := context.WithValue(context.Background(), oauth2.HTTPClient, closingClient(t))
	tok := oauth2Token(srv.Login("ada"))
	// x/oauth2 renews 10 s before expiry by default, which would refresh a 1 s token at once.
	ts := &countingSource{ts: oauth2.ReuseTokenSourceWithExpiry(tok, oauth2Config(srv).TokenSource(octx, tok), 100*time.Millisecond)}
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenSource(ts))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	failed, err := concurrentMe(ctx, e, 1000, "ada")
	require.Zero(t, failed, "first error: %v", err)
	assert.EqualValues(t, 1, ts.calls.Load(), "the engine asked the source once for 1,000 requests")
	assert.Zero(t, srv.Stats().RefreshCalls)
	sleepPast(t, e)
	failed, err = concurrentMe(ctx, e, 1000, "ada")
	require.Zero(t, failed, "first error: %v", err)
	st := srv.Stats()
	assert.EqualValues(t, 1, st.RefreshCalls, "one refresh across the expiry")
	assert.EqualValues(t, 2, ts.calls.Load())
	assert.Zero(t, st.ReuseDetected)
	assert.Zero(t, st.Revocations)
}

// A 401 on a token an opaque source still holds: the engine asks once more, then fails with
// ErrStaleToken instead of sending the refused token in a loop. WithOAuth2Config, holding the config,
// forces a refresh instead: one for a storm of 1,000.
func TestRejectedTokenFromSource(t *testing.T) {
	t.Run("opaque source", func(t *testing.T) {
		srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
		octx := context.WithValue(context.Background(), oauth2.HTTPClient, closingClient(t))
		tok := oauth2Token(srv.Login("ada"))
		ts := &countingSource{ts: oauth2Config(srv).TokenSource(octx, tok)}
		e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenSource(ts))
		require.NoError(t, err)
		t.Cleanup(func() { closeEngine(t, e) })
		ctx := context.Background()
		_, err = me(ctx, e)
		require.NoError(t, err)
		srv.ExpireAccessTokens()
		_, err = me(ctx, e)
		require.ErrorIs(t, err, engine.ErrStaleToken)
		require.ErrorIs(t, err, engine.ErrRefreshFailed)
		assert.EqualValues(t, 3, ts.calls.Load(), "the first token, then the two asks after the 401")
		assert.Zero(t, srv.Stats().RefreshCalls)
	})
	t.Run("WithOAuth2Config", func(t *testing.T) {
		srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
		e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithOAuth2Config(oauth2Config(srv), oauth2Token(srv.Login("ada"))))
		require.NoError(t, err)
		t.Cleanup(func() { closeEngine(t, e) })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for round := int64(1); round <= 2; round++ {
			srv.ExpireAccessTokens()
			failed, err := concurrentMe(ctx, e, 1000, "ada")
			require.Zero(t, failed, "first error: %v", err)
			st := srv.Stats()
			assert.Equal(t, round, st.RefreshCalls, "one forced refresh per storm")
			assert.Zero(t, st.ReuseDetected)
		}
	})
}

// Engine.TokenSource shared by an x/oauth2 client and the engine's own client, 500 goroutines each,
// across two expiries: two refreshes in all, the rotating refresh token never replayed.
func TestEngineTokenSourceSharedWithOAuth2Client(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: expiringTTL})
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRefreshSkew(-1))
	oc := oauth2.NewClient(context.WithValue(context.Background(), oauth2.HTTPClient, closingClient(t)), e.TokenSource())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for phase := range 3 {
		if phase > 0 {
			sleepPast(t, e)
		}
		var failed atomic.Int64
		fanOut(1000, func(i int) {
			if i%2 == 0 {
				if _, err := me(ctx, e); err != nil {
					failed.Add(1)
				}
				return
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/me", nil)
			resp, err := oc.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		})
		require.Zero(t, failed.Load(), "phase %d", phase)
	}
	st := srv.Stats()
	assert.EqualValues(t, 2, st.RefreshCalls, "one refresh per expiry for both clients")
	assert.Zero(t, st.ReuseDetected)
	assert.Zero(t, st.Revocations)
	assert.Zero(t, st.Unauthorized)
}

// What New refuses about the grant options.
func TestGrantOptionErrors(t *testing.T) {
	cc := engine.ClientCredentials{TokenURL: "https://id.example/token", ClientID: "svc", ClientSecret: "s"}
	for _, tc := range []struct {
		name   string
		public bool
		opts   []engine.Option
		option string
	}{
		{"client credentials and a token endpoint", false, []engine.Option{engine.WithClientCredentials(cc),
			engine.WithTokenEndpoint("https://id.example/token", engine.OAuth2Refresh)}, "WithClientCredentials"},
		{"client credentials without a client ID", false, []engine.Option{engine.WithClientCredentials(engine.ClientCredentials{TokenURL: cc.TokenURL})}, "WithClientCredentials"},
		{"client credentials with a bad URL", false, []engine.Option{engine.WithClientCredentials(engine.ClientCredentials{TokenURL: "token", ClientID: "x"})}, "WithClientCredentials"},
		{"unknown auth method", false, []engine.Option{engine.WithClientCredentials(engine.ClientCredentials{TokenURL: cc.TokenURL, ClientID: "x", AuthMethod: 7})}, "WithClientCredentials"},
		{"nil token source", false, []engine.Option{engine.WithTokenSource(nil)}, "WithTokenSource"},
		{"token source and a refresh func", false, []engine.Option{engine.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a"})),
			engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil })}, "WithTokenSource"},
		{"nil oauth2 config", false, []engine.Option{engine.WithOAuth2Config(nil, &oauth2.Token{RefreshToken: "r"})}, "WithOAuth2Config"},
		{"public engine", true, []engine.Option{engine.WithClientCredentials(cc)}, "WithClientCredentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]engine.Option{engine.WithBaseURL("https://api.example")}, tc.opts...)
			var err error
			if tc.public {
				_, err = engine.NewPublic(opts...)
			} else {
				_, err = engine.New(opts...)
			}
			var ce *engine.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.ErrorIs(t, err, engine.ErrInvalidConfig)
			assert.Equal(t, tc.option, ce.Option)
		})
	}
}

// Credential and ClientCredentials never print their secrets; a public engine has no token to give.
func TestCredentialRedactedAndPublic(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{})
	login := srv.Login("ada")
	e := newEngine(t, srv, login)
	c, err := e.Credential(context.Background())
	require.NoError(t, err)
	assert.Equal(t, login.Access, c.AccessToken)
	assert.Equal(t, "Bearer "+login.Access, c.Header())
	assert.True(t, login.Expiry.Equal(c.Expiry))
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%d", c)} {
		assert.NotContains(t, s, login.Access)
	}
	cc := engine.ClientCredentials{TokenURL: "https://id.example/token", ClientID: "svc", ClientSecret: "client-secret-value"}
	for _, s := range []string{fmt.Sprint(cc), fmt.Sprintf("%+v", cc), fmt.Sprintf("%#v", &cc), fmt.Sprintf("%s", []engine.ClientCredentials{cc})} {
		assert.NotContains(t, s, "client-secret-value")
		assert.Contains(t, s, "svc")
	}
	pub, err := engine.NewPublic()
	require.NoError(t, err)
	defer closeEngine(t, pub)
	_, err = pub.Credential(context.Background())
	require.ErrorIs(t, err, engine.ErrInvalidConfig)
	_, err = pub.TokenSource().Token()
	require.ErrorIs(t, err, engine.ErrInvalidConfig)
}

// funcSource is a TokenSource made of a function.
type funcSource func() (*oauth2.Token, error)

func (f funcSource) Token() (*oauth2.Token, error) { return f() }

// What a TokenSource's answers become: its errors and unusable tokens are read into the engine's
// error model, like a token endpoint's answers, and the secrets they echo stay out of the errors.
func TestTokenSourceAnswers(t *testing.T) {
	retrieve := func(status int, code, desc string) error {
		return &oauth2.RetrieveError{Response: &http.Response{StatusCode: status, Header: http.Header{}}, ErrorCode: code, ErrorDescription: desc}
	}
	for _, tc := range []struct {
		name      string
		answers   []func() (*oauth2.Token, error) // one per call; the last repeats
		wantIs    []error
		wantCode  string
		wantCalls int64
	}{
		{"invalid_grant ends the session", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) {
				return nil, retrieve(400, "invalid_grant", "grant the-secret-grant revoked")
			}},
			[]error{engine.ErrSessionExpired}, "invalid_grant", 1},
		{"a 503 is retried", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) { return nil, retrieve(503, "", "") },
			func() (*oauth2.Token, error) { return &oauth2.Token{AccessToken: "good"}, nil }},
			nil, "", 2},
		{"a token that cannot be sent", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) { return &oauth2.Token{AccessToken: "a\r\nX-Evil: 1"}, nil }},
			[]error{engine.ErrRefreshFailed, engine.ErrMalformedTokenAnswer}, "", 0}, // 0: retried (a malformed answer may pass)
		{"a DPoP token", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) { return &oauth2.Token{AccessToken: "a", TokenType: "DPoP"}, nil }},
			[]error{engine.ErrSessionExpired, engine.ErrUnsupportedTokenType}, "", 1},
		{"a panicking source", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) { panic("boom") }},
			[]error{engine.ErrRefreshFailed}, "", 1},
		{"any other error", []func() (*oauth2.Token, error){
			func() (*oauth2.Token, error) { return nil, errors.New("metadata server unreachable") }},
			[]error{engine.ErrRefreshFailed}, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := startAPI(t, fakeapi.Options{})
			var calls atomic.Int64
			src := funcSource(func() (*oauth2.Token, error) {
				n := int(calls.Add(1))
				return tc.answers[min(n, len(tc.answers))-1]()
			})
			e, err := engine.New(engine.WithBaseURL(api.URL()), engine.WithTokenSource(src),
				engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}))
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			c, err := e.Credential(context.Background())
			if tc.wantCalls == 0 {
				assert.Greater(t, calls.Load(), int64(1), "asked again while the caller waited")
			} else {
				assert.Equal(t, tc.wantCalls, calls.Load())
			}
			if tc.wantIs == nil {
				require.NoError(t, err)
				assert.Equal(t, "good", c.AccessToken)
				return
			}
			for _, target := range tc.wantIs {
				require.ErrorIs(t, err, target)
			}
			if tc.wantCode != "" {
				var ee *engine.TokenEndpointError
				require.ErrorAs(t, err, &ee)
				assert.Equal(t, tc.wantCode, ee.Code)
			}
			assert.NotContains(t, err.Error(), "X-Evil")
		})
	}
}

// Client credentials renew before expiry like any token: with the default skew the engine fetches
// the next token while the current one is still valid, and no request meets a 401.
func TestClientCredentialsProactiveRenewal(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: 2 * time.Second})
	srv.RegisterClient("svc", "client-secret-value", fakeapi.ClientSecretBasic)
	e := clientCredsEngine(t, srv, engine.ClientCredentials{ClientID: "svc", ClientSecret: "client-secret-value"})
	ctx := context.Background()
	_, err := me(ctx, e)
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.ClientTokens())
	assert.Eventually(t, func() bool { return srv.ClientTokens() == 2 }, 10*time.Second, 10*time.Millisecond,
		"a second token is fetched without any request asking for it")
	_, err = me(ctx, e)
	require.NoError(t, err)
	assert.Zero(t, srv.Stats().Unauthorized)
}

// Calls to a TokenSource never overlap, even when the application sets new (empty) tokens while a
// call hangs and the engine starts the next refresh.
func TestTokenSourceCallsNeverOverlap(t *testing.T) {
	api := startAPI(t, fakeapi.Options{})
	login := api.Login("ada")
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	var inside, most, calls atomic.Int64
	src := funcSource(func() (*oauth2.Token, error) {
		n := inside.Add(1)
		defer inside.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		entered <- struct{}{}
		if calls.Add(1) == 1 {
			<-release // the first call hangs until the test lets it go
		}
		return &oauth2.Token{AccessToken: login.Access}, nil
	})
	e, err := engine.New(engine.WithBaseURL(api.URL()), engine.WithTokenSource(src))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before closeEngine, should the test stop early
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan error, 1)
	go func() { _, err := e.Credential(ctx); got <- err }()
	<-entered // the first refresh is inside the source
	require.NoError(t, e.SetTokens(ctx, engine.Tokens{}))
	select { // the refresh SetTokens started must wait for the first call to return
	case <-entered:
		t.Fatal("a second call entered the source while the first was inside it")
	case <-time.After(200 * time.Millisecond):
	}
	free()
	require.NoError(t, <-got)
	<-entered
	assert.EqualValues(t, 1, most.Load(), "never more than one call inside the source")
}

// clientCredsEngine is an engine on srv's API getting its tokens by the client-credentials grant cc
// from srv's token endpoint (cc.TokenURL is filled in), closed when the test ends.
func clientCredsEngine(t *testing.T, srv *fakeapi.Server, cc engine.ClientCredentials) *engine.Engine {
	t.Helper()
	cc.TokenURL = srv.OAuth2TokenURL()
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithClientCredentials(cc))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}
