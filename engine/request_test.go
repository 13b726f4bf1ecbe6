package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// The engine as a plain *http.Client: the body of a POST interrupted by a 401 is replayed through
// GetBody; a body that cannot be replayed is not resent and the caller gets the 401.
func TestBodyReplayAfter401(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	client := e.Client()

	srv.ExpireAccessTokens()
	resp, err := client.Post(srv.URL()+"/echo", "application/json", strings.NewReader(`{"n":42}`))
	require.NoError(t, err)
	var echoed struct {
		User string          `json:"user"`
		Body json.RawMessage `json:"body"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&echoed))
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"n":42}`, string(echoed.Body))
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)

	// A body without GetBody (a plain io.Reader the request cannot rewind) is sent once.
	srv.ExpireAccessTokens()
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/echo", io.MultiReader(strings.NewReader(`{"n":7}`)))
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	resp, err = client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	// The rejection was still reported (asynchronously): it starts a refresh by itself, and the next
	// request finds the refreshed token without meeting a 401.
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 2 }, 5*time.Second, time.Millisecond)
	before := srv.Stats().Unauthorized
	resp, err = client.Get(srv.URL() + "/items/1")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, before, srv.Stats().Unauthorized)
	assert.Equal(t, int64(2), srv.Stats().RefreshCalls)
}

// headerEcho answers which Authorization header it saw, and redirects /to?url=... there.
func headerEcho(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("url"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"authorization": r.Header.Get("Authorization")})
	}))
	t.Cleanup(s.Close)
	return s
}

// The token goes to the API's origin only: not to another host or port, including by redirect.
func TestTokenOnlyGoesToItsOrigin(t *testing.T) {
	api, other := headerEcho(t), headerEcho(t) // two loopback ports: two origins
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokens(engine.Tokens{Access: "secret-access"}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	ctx := context.Background()
	seen := func(url string) string {
		got, err := engine.GetJSON[map[string]string](ctx, e, url)
		require.NoError(t, err)
		return got["authorization"]
	}
	assert.Equal(t, "Bearer secret-access", seen(api.URL+"/x"))
	assert.Empty(t, seen(other.URL+"/x"), "another port is another origin")
	assert.Empty(t, seen(api.URL+"/to?url="+other.URL+"/x"), "a redirect away loses the token")
	assert.Equal(t, "Bearer secret-access", seen(other.URL+"/to?url="+api.URL+"/x"), "a redirect to the API gets it")
	host := strings.Replace(api.URL, "127.0.0.1", "localhost", 1)
	assert.Empty(t, seen(host+"/x"), "another host name is another origin")
}

// A public engine never attaches a token and never refreshes, even towards the API.
func TestPublicEngineNeverAttachesTokens(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e, err := engine.NewPublic(engine.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	got, err := engine.GetJSON[map[string]any](context.Background(), e, "/public/status")
	require.NoError(t, err)
	assert.Equal(t, false, got["authorization_seen"])
	_, err = engine.GetJSON[item](context.Background(), e, "/items/1")
	var apiErr *engine.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusUnauthorized, apiErr.Status)
	assert.Zero(t, srv.Stats().RefreshCalls)
	assert.ErrorIs(t, e.SetTokens(context.Background(), engine.Tokens{Access: "a"}), engine.ErrInvalidConfig)
}

// The typed helpers turn error answers into *APIError, in one place, from every usual shape.
func TestTypedHelpersParseErrors(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-7")
		switch r.URL.Path {
		case "/problem":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"type":"https://example.test/invalid","title":"Invalid item","status":422,"detail":"name is required","code":"E_NAME","errors":[{"field":"name"}]}`))
		case "/message":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"message":"already exists","code":"E_DUP"}`))
		case "/text":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("  upstream down \n"))
		case "/truncated":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"cut`))
		case "/huge":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(bytes.Repeat([]byte("x"), 10<<20))
		case "/empty":
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(s.Close)
	e, err := engine.NewPublic(engine.WithBaseURL(s.URL), engine.WithMaxErrorBodyBytes(64<<10))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })

	for _, tc := range []struct {
		path    string
		status  int
		code    string
		message string
	}{
		{"/problem", 422, "E_NAME", "name is required"},
		{"/message", 409, "E_DUP", "already exists"},
		{"/text", 502, "", "upstream down"},
		{"/truncated", 400, "", `{"message":"cut`},
		{"/empty", 404, "", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := engine.GetJSON[item](context.Background(), e, tc.path+"?api_key=hunter2")
			var apiErr *engine.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.status, apiErr.Status)
			assert.Equal(t, tc.code, apiErr.Code)
			assert.Equal(t, tc.message, apiErr.Message)
			assert.Equal(t, "req-7", apiErr.RequestID)
			assert.NotContains(t, err.Error(), "hunter2", "query values are redacted")
		})
	}
	_, err = engine.GetJSON[item](context.Background(), e, "/problem")
	var apiErr *engine.APIError
	require.True(t, errors.As(err, &apiErr))
	require.NotNil(t, apiErr.Problem)
	assert.Equal(t, "Invalid item", apiErr.Problem.Title)
	assert.JSONEq(t, `[{"field":"name"}]`, string(apiErr.Problem.Extensions["errors"]))

	_, err = engine.GetJSON[item](context.Background(), e, "/huge")
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 500, apiErr.Status)
	assert.LessOrEqual(t, len(apiErr.Message), 1024, "bounded")
}

// Typed helpers resolve paths under the base URL's path and round-trip JSON.
func TestTypedHelpersRoundTrip(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	ctx := context.Background()
	put, err := engine.PutJSON[map[string]any](ctx, e, "/items/abc", map[string]any{"name": "renamed"})
	require.NoError(t, err)
	assert.Equal(t, "renamed", put["name"])
	got, err := engine.GetJSON[map[string]any](ctx, e, "items/abc")
	require.NoError(t, err)
	assert.Equal(t, "renamed", got["name"])
	me, err := engine.GetJSON[struct{ User string }](ctx, e, srv.URL()+"/me")
	require.NoError(t, err)
	assert.Equal(t, "ada", me.User)
}

// Tokens never show up when printed, whatever the verb.
func TestTokensNeverPrintSecrets(t *testing.T) {
	tok := engine.Tokens{Access: "acc-SECRET", Refresh: "ref-SECRET", Expiry: time.Unix(1e9, 0)}
	for _, s := range []string{tok.String(), fmtAll(tok)} {
		assert.NotContains(t, s, "SECRET")
	}
}

func fmtAll(v any) string {
	var b strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		b.WriteString(sprintf(verb, v))
	}
	return b.String()
}

// scribblingTransport edits the Authorization value of every request in place after sending it, as
// a careless downstream transport might (the RoundTripper contract forbids it).
type scribblingTransport struct{ base http.RoundTripper }

func (s scribblingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if v := req.Header["Authorization"]; len(v) > 0 {
		v[0] = "Bearer scribbled"
	}
	return resp, err
}

// A transport that edits header values in place spoils only its own request: every request, the
// ones running at the same time included, still sends the engine's token.
func TestTransportEditingHeadersInPlaceSpoilsNoOtherRequest(t *testing.T) {
	var wrong atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer the-token" {
			wrong.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	e, err := engine.New(engine.WithBaseURL(srv.URL), engine.WithTransport(scribblingTransport{tr}),
		engine.WithTokens(engine.Tokens{Access: "the-token", Expiry: time.Now().Add(time.Hour)}))
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	client := e.Client()
	fanOut(200, func(int) {
		resp, err := client.Get(srv.URL + "/items/1")
		if assert.NoError(t, err) {
			_ = resp.Body.Close()
		}
	})
	assert.Zero(t, wrong.Load(), "requests sent with another request's scribbled token")
}
