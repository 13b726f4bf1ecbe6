package fakeapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func refresh(t *testing.T, s *Server, rt string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.OAuth2TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

func get(t *testing.T, s *Server, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/items/1", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// Rotation and reuse detection: a refresh token works once; replaying it revokes the whole family,
// including the pair issued after it.
func TestRotationAndReuseDetection(t *testing.T) {
	s := Start(Options{AccessTTL: time.Hour})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	first := s.Login("ada")
	assert.Equal(t, http.StatusOK, get(t, s, first.Access))

	status, body := refresh(t, s, first.Refresh)
	require.Equal(t, http.StatusOK, status)
	second := body["refresh_token"].(string)
	assert.NotEqual(t, first.Refresh, second)
	assert.Equal(t, float64(3600), body["expires_in"])
	assert.Equal(t, http.StatusOK, get(t, s, body["access_token"].(string)))

	status, body = refresh(t, s, first.Refresh) // replay
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "invalid_grant", body["error"])
	status, _ = refresh(t, s, second) // the family is revoked: the legitimate holder is out too
	assert.Equal(t, http.StatusBadRequest, status)
	st := s.Stats()
	assert.Equal(t, int64(1), st.ReuseDetected)
	assert.Equal(t, int64(1), st.Revocations)
	assert.Equal(t, int64(3), st.RefreshCalls)
}

func TestAccessTokensExpire(t *testing.T) {
	s := Start(Options{AccessTTL: 50 * time.Millisecond})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok := s.Login("ada")
	assert.Equal(t, 3, strings.Count(tok.Access, ".")+1, "a JWT-shaped token")
	assert.Equal(t, http.StatusOK, get(t, s, tok.Access))
	time.Sleep(60 * time.Millisecond)
	assert.Equal(t, http.StatusUnauthorized, get(t, s, tok.Access))
	assert.Equal(t, int64(1), s.Stats().Unauthorized)
	assert.Equal(t, int64(2), s.RequestsWithToken(tok.Access))
}

func TestTokenKnobs(t *testing.T) {
	s := Start(Options{Opaque: true})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok := s.Login("ada")
	assert.Zero(t, strings.Count(tok.Access, "."), "opaque")
	s.SetTokenFailure(http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`, 1)
	status, _ := refresh(t, s, tok.Refresh)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	status, body := refresh(t, s, tok.Refresh) // the failure did not spend the token
	assert.Equal(t, http.StatusOK, status)
	_, hasExpiry := body["expires_in"]
	assert.False(t, hasExpiry, "opaque mode leaves expires_in out")
}

// A held token call answers only after release, and then with the configured delay on top.
func TestHoldTokenCalls(t *testing.T) {
	s := Start(Options{})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok := s.Login("ada")
	release := s.HoldTokenCalls()
	s.SetTokenDelay(10 * time.Millisecond)
	answered := make(chan int, 1)
	go func() {
		resp, err := http.PostForm(s.OAuth2TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.Refresh}})
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return s.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	select {
	case <-answered:
		t.Fatal("a held token call was answered before release")
	case <-time.After(50 * time.Millisecond):
	}
	released := time.Now()
	release()
	release() // a second call does nothing
	select {
	case status := <-answered:
		assert.Equal(t, http.StatusOK, status)
		assert.GreaterOrEqual(t, time.Since(released), 10*time.Millisecond, "the delay applies after release")
	case <-time.After(5 * time.Second):
		t.Fatal("the token call was not answered after release")
	}
	assert.Equal(t, int64(1), s.Stats().TokenAnswers)
}

// Close wakes a held token call.
func TestHoldTokenCallsEndsAtClose(t *testing.T) {
	s := Start(Options{})
	tok := s.Login("ada")
	_ = s.HoldTokenCalls()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.PostForm(s.OAuth2TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.Refresh}})
		if err == nil {
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return s.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	s.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a held token call waiting")
	}
	http.DefaultClient.CloseIdleConnections()
}

// Flakiness: every request 503 at 1.0; every answer lost to a reset at 1.0, with the order created;
// a fraction in between lands near its share.
func TestFlakiness(t *testing.T) {
	s := Start(Options{AccessTTL: time.Hour})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok := s.Login("ada")

	s.SetFlakiness(Flakiness{Unavailable: 1})
	assert.Equal(t, http.StatusServiceUnavailable, get(t, s, tok.Access))

	s.SetFlakiness(Flakiness{Reset: 1})
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/orders", strings.NewReader(`{"n":1}`))
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "a reset connection gives no answer")
	assert.Equal(t, int64(1), s.Orders(), "the order was created before the reset")

	s.SetFlakiness(Flakiness{Unavailable: 0.5})
	n503 := 0
	for range 400 {
		if get(t, s, tok.Access) == http.StatusServiceUnavailable {
			n503++
		}
	}
	assert.InDelta(t, 200, n503, 60, "about half")
	unavailable, resets := s.FlakyCounts()
	assert.Equal(t, int64(n503+1), unavailable)
	assert.Equal(t, int64(1), resets)

	s.SetFlakiness(Flakiness{})
	assert.Equal(t, http.StatusOK, get(t, s, tok.Access))
}

// The same order body twice without an Idempotency-Key is a duplicate; with one key it is not.
func TestDuplicateOrders(t *testing.T) {
	s := Start(Options{AccessTTL: time.Hour})
	defer s.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tok := s.Login("ada")
	order := func(body, key string) int {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Access)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusCreated, order(`{"n":1}`, ""))
	assert.Equal(t, http.StatusCreated, order(`{"n":1}`, ""))
	assert.Equal(t, http.StatusCreated, order(`{"n":2}`, "k"))
	assert.Equal(t, http.StatusCreated, order(`{"n":2}`, "k")) // replayed
	assert.Equal(t, http.StatusCreated, order(`{"n":3}`, ""))
	assert.Equal(t, int64(4), s.Orders())
	assert.Equal(t, int64(1), s.DuplicateOrders())
}

// Handler serves the API without a socket, with the same tokens and counters.
func TestHandlerServesWithoutSocket(t *testing.T) {
	s := Start(Options{AccessTTL: time.Hour})
	defer s.Close()
	tok := s.Login("ada")
	req := httptest.NewRequest(http.MethodGet, "/items/7", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `"owner":"ada"`)
	assert.Equal(t, int64(1), s.Stats().APIRequests)

	s.SetFlakiness(Flakiness{Reset: 1})
	assert.PanicsWithValue(t, http.ErrAbortHandler, func() { s.Handler().ServeHTTP(httptest.NewRecorder(), req) })
}

// A refresh whose answer is lost after the server rotated: the client sees the connection close,
// and its replay of the old refresh token gets the same new pair within ReuseGrace, or revokes the
// family without it.
func TestLostAnswerAndReuseGrace(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Minute} {
		t.Run("grace "+grace.String(), func(t *testing.T) {
			s := Start(Options{AccessTTL: time.Hour, ReuseGrace: grace})
			defer s.Close()
			defer http.DefaultClient.CloseIdleConnections()
			first := s.Login("ada")
			s.SetTokenAnswerLoss(1)
			resp, err := http.PostForm(s.OAuth2TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Refresh}})
			if err == nil {
				resp.Body.Close()
			}
			require.Error(t, err, "the answer is lost")
			assert.Equal(t, int64(1), s.Stats().LostAnswers)

			status, body := refresh(t, s, first.Refresh) // the replay
			st := s.Stats()
			if grace == 0 {
				assert.Equal(t, http.StatusBadRequest, status)
				assert.Equal(t, "invalid_grant", body["error"])
				assert.Equal(t, int64(1), st.ReuseDetected)
				assert.Equal(t, int64(1), st.Revocations)
				return
			}
			require.Equal(t, http.StatusOK, status)
			issued := s.IssuedTokens()
			assert.Equal(t, issued[len(issued)-2], body["access_token"], "the pair the lost answer carried")
			assert.Equal(t, issued[len(issued)-1], body["refresh_token"])
			assert.Len(t, issued, 4, "no new pair was minted for the replay")
			assert.Equal(t, int64(1), st.GraceReplays)
			assert.Zero(t, st.ReuseDetected)
			status, _ = refresh(t, s, body["refresh_token"].(string))
			assert.Equal(t, http.StatusOK, status, "the replayed pair's refresh token works")
		})
	}
}
