package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// rotatingServer is a token endpoint with refresh token rotation and reuse detection: each refresh
// token works once; a second use is invalid_grant. Its answers carry an access token the engine
// must refuse (bad), with a fresh refresh token, until good is set.
type rotatingServer struct {
	mu   sync.Mutex
	seen []string
	bad  string // the access token of the refused answers; "" for a good one
	rot  bool   // the refused answers carry a new refresh token
	n    int
}

func (s *rotatingServer) handler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		if r.Header.Get("Authorization") == "Bearer good-access" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	_ = r.ParseForm()
	rt := r.PostForm.Get("refresh_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, old := range s.seen {
		if old == rt {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"refresh token reused"}`)
			return
		}
	}
	s.seen = append(s.seen, rt)
	s.n++
	w.Header().Set("Content-Type", "application/json")
	refresh := ""
	if s.rot {
		refresh = fmt.Sprintf(`,"refresh_token":"refresh-rotated-%d"`, s.n)
	}
	if s.bad != "" {
		fmt.Fprintf(w, `{"access_token":%q%s,"expires_in":3600}`, s.bad, refresh)
		return
	}
	fmt.Fprintf(w, `{"access_token":"good-access"%s,"expires_in":3600}`, refresh)
}

func (s *rotatingServer) presented() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// A rotating endpoint whose answer the engine refuses has spent the refresh token it was sent: the
// engine keeps (and saves) the new one from the refused answer and never replays the spent one.
func TestRefusedAnswerKeepsRotatedRefreshToken(t *testing.T) {
	cases := []struct {
		name string
		bad  string
	}{
		{"access token with a space", "bad token"},
		{"access token with a CR", "bad\rtoken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &rotatingServer{bad: tc.bad, rot: true}
			srv := httptest.NewServer(http.HandlerFunc(s.handler))
			defer srv.Close()
			store := &engine.MemoryStore{}
			require.NoError(t, store.Save(context.Background(), engine.Tokens{Access: "access-0", Refresh: "refresh-original"}))
			e, err := engine.New(engine.WithBaseURL(srv.URL), engine.WithTokenStore(store),
				engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh))
			require.NoError(t, err)
			defer closeEngine(t, e)

			for range 3 {
				_, err := fetchStatus(e, srv.URL+"/me")
				require.Error(t, err)
				assert.NotErrorIs(t, err, engine.ErrSessionExpired, "the refresh token must never be replayed")
			}
			seen := s.presented()
			require.NotEmpty(t, seen)
			assert.Equal(t, "refresh-original", seen[0])
			for i := 1; i < len(seen); i++ {
				assert.Equal(t, fmt.Sprintf("refresh-rotated-%d", i), seen[i], "each call sends the newest refresh token")
			}
			saved, err := store.Load(context.Background())
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("refresh-rotated-%d", len(seen)), saved.Refresh, "the rotated refresh token is saved")

			// The endpoint recovers: the kept refresh token still works.
			s.mu.Lock()
			s.bad = ""
			s.mu.Unlock()
			status, err := fetchStatus(e, srv.URL+"/me")
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, status)
		})
	}
}

// A refused answer without a refresh token from a refresh-token grant is not retried at once: the
// server may have rotated, and the old token would be replayed.
func TestRefusedAnswerWithoutRefreshTokenIsNotReplayed(t *testing.T) {
	s := &rotatingServer{bad: "bad token"}
	srv := httptest.NewServer(http.HandlerFunc(s.handler))
	defer srv.Close()
	e, err := engine.New(engine.WithBaseURL(srv.URL), engine.WithTokens(engine.Tokens{Access: "access-0", Refresh: "refresh-original"}),
		engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh))
	require.NoError(t, err)
	defer closeEngine(t, e)
	_, err = fetchStatus(e, srv.URL+"/me")
	require.Error(t, err)
	assert.ErrorIs(t, err, engine.ErrRefreshFailed)
	assert.NotErrorIs(t, err, engine.ErrSessionExpired)
	assert.Equal(t, []string{"refresh-original"}, s.presented(), "one call, no automatic replay")
}

// fetchStatus makes one GET through the engine and returns the status, or the engine's error.
func fetchStatus(e *engine.Engine, url string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
