package subjects

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen records the Authorization header and body of every request the fake API receives.
type seen struct {
	mu    sync.Mutex // guards auths
	auths []string
}

func (s *seen) observe(r *http.Request) {
	s.mu.Lock()
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	s.mu.Unlock()
}

func (s *seen) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auths) == 0 {
		return ""
	}
	return s.auths[len(s.auths)-1]
}

// build starts a fake API and builds s on it; both stop when the test ends.
func build(t *testing.T, s Subject, opts fakeapi.Options) (*fakeapi.Server, Client, *seen) {
	t.Helper()
	obs := &seen{}
	opts.Observe = obs.observe
	srv := fakeapi.Start(opts)
	tr := NewTransport(8)
	c, err := s.New(Env{BaseURL: srv.URL(), TokenURL: srv.OAuth2TokenURL(), Tokens: srv.Login("ada"), Transport: tr})
	require.NoError(t, err, s.Name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, c.Close(ctx))
		tr.CloseIdleConnections()
		srv.Close()
	})
	return srv, c, obs
}

func buildable(t *testing.T) []Subject {
	var out []Subject
	for _, s := range All() {
		if s.New != nil {
			out = append(out, s)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// Every subject sends GETs and POSTs with the current access token and the caller's headers.
func TestEverySubjectSendsWithToken(t *testing.T) {
	for _, s := range buildable(t) {
		t.Run(s.Name, func(t *testing.T) {
			srv, c, obs := build(t, s, fakeapi.Options{AccessTTL: time.Hour})
			ctx := context.Background()
			status, err := c.Do(ctx, Request{Method: http.MethodGet, URL: srv.URL() + "/items/1", Header: http.Header{"X-Test": {"1"}}})
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, status)
			assert.True(t, strings.HasPrefix(obs.last(), "Bearer "), "token attached: %q", obs.last())
			status, err = c.Do(ctx, Request{Method: http.MethodPost, URL: srv.URL() + "/orders", Body: []byte(`{"n":1}`)})
			require.NoError(t, err)
			assert.Equal(t, http.StatusCreated, status)
			assert.Equal(t, int64(1), srv.Orders())
			assert.Zero(t, srv.Stats().RefreshCalls)
		})
	}
}

// Every subject that refreshes on a 401 does so and resends; raw, otelhttp (raw traced) and oauth2
// (which refreshes only on a known expiry) hand the 401 back.
func TestRefreshOn401(t *testing.T) {
	for _, s := range buildable(t) {
		t.Run(s.Name, func(t *testing.T) {
			srv, c, _ := build(t, s, fakeapi.Options{AccessTTL: time.Hour, Opaque: true})
			srv.ExpireAccessTokens()
			status, err := c.Do(context.Background(), Request{Method: http.MethodPost, URL: srv.URL() + "/echo", Body: []byte(`{"a":1}`)})
			require.NoError(t, err)
			if s.Name == Raw || s.Name == OTelHTTP || s.Name == "oauth2" {
				assert.Equal(t, http.StatusUnauthorized, status)
				assert.Zero(t, srv.Stats().RefreshCalls)
				return
			}
			assert.Equal(t, http.StatusOK, status, "refreshed and resent with the body")
			assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
		})
	}
}

// oauth2 and the engine refresh before sending when they know the token has expired.
func TestRefreshOnKnownExpiry(t *testing.T) {
	for _, name := range []string{"oauth2", "engine"} {
		ss, err := Named(name)
		require.NoError(t, err)
		srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour})
		tok := srv.Login("ada")
		tok.Expiry = time.Now().Add(-time.Second)
		srv.ExpireAccessTokens()
		tr := NewTransport(4)
		c, err := ss[0].New(Env{BaseURL: srv.URL(), TokenURL: srv.OAuth2TokenURL(), Tokens: tok, Transport: tr})
		require.NoError(t, err)
		status, err := c.Do(context.Background(), Request{Method: http.MethodGet, URL: srv.URL() + "/items/1"})
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, status, name)
		assert.Zero(t, srv.Stats().Unauthorized, "%s refreshed before sending", name)
		require.NoError(t, c.Close(context.Background()))
		tr.CloseIdleConnections()
		srv.Close()
	}
}

func TestNamed(t *testing.T) {
	ss, err := Named("engine", Raw)
	require.NoError(t, err)
	require.Len(t, ss, 2)
	assert.Equal(t, Raw, ss[0].Name, "in All's order")
	_, err = Named("nope")
	assert.ErrorContains(t, err, "nope")
}

func TestNewTransport(t *testing.T) {
	tr := NewTransport(300)
	assert.Equal(t, 300, tr.MaxIdleConnsPerHost)
	assert.Equal(t, 300, tr.MaxIdleConns)
	assert.Zero(t, tr.MaxConnsPerHost, "no cap on open connections")
}
