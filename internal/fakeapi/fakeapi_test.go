package fakeapi

import (
	"encoding/json"
	"net/http"
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
