package tokenwire

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func jwt(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
}

func TestParse(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name    string
		format  Format
		body    string
		want    messages.Tokens
		wantErr error
	}{
		{"oauth2 with expires_in", OAuth2, `{"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"Bearer"}`,
			messages.Tokens{Access: "a", Refresh: "r", Expiry: now.Add(time.Hour)}, nil},
		{"oauth2 expires_in as string", OAuth2, `{"access_token":"a","expires_in":"60"}`,
			messages.Tokens{Access: "a", Expiry: now.Add(time.Minute)}, nil},
		{"oauth2 fractional expires_in", OAuth2, `{"access_token":"a","expires_in":1.5}`,
			messages.Tokens{Access: "a", Expiry: now.Add(1500 * time.Millisecond)}, nil},
		{"oauth2 no expiry", OAuth2, `{"access_token":"a"}`, messages.Tokens{Access: "a"}, nil},
		{"json seed format", JSON, `{"accessToken":"a","refreshToken":"r"}`, messages.Tokens{Access: "a", Refresh: "r"}, nil},
		{"json with JWT exp", JSON, `{"accessToken":"` + jwt(`{"exp":1700000100}`) + `","refreshToken":"r"}`,
			messages.Tokens{Access: jwt(`{"exp":1700000100}`), Refresh: "r", Expiry: time.Unix(1_700_000_100, 0)}, nil},
		{"expires_in wins over JWT", OAuth2, `{"access_token":"` + jwt(`{"exp":1}`) + `","expires_in":10}`,
			messages.Tokens{Access: jwt(`{"exp":1}`), Expiry: now.Add(10 * time.Second)}, nil},
		{"wrong format's fields", JSON, `{"access_token":"a"}`, messages.Tokens{}, ErrMalformed},
		{"no access token", OAuth2, `{"refresh_token":"r"}`, messages.Tokens{}, ErrMalformed},
		{"negative expires_in", OAuth2, `{"access_token":"a","expires_in":-5}`, messages.Tokens{}, ErrMalformed},
		{"not JSON", OAuth2, `<html>`, messages.Tokens{}, ErrMalformed},
		{"truncated", OAuth2, `{"access_token":"a`, messages.Tokens{}, ErrMalformed},
		{"access token of the wrong type", OAuth2, `{"access_token":5}`, messages.Tokens{}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.format, []byte(tc.body), now)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.NotContains(t, err.Error(), `"a`, "errors do not quote the answer")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want.Access, got.Access)
			assert.Equal(t, tc.want.Refresh, got.Refresh)
			assert.True(t, tc.want.Expiry.Equal(got.Expiry), "expiry %v, want %v", got.Expiry, tc.want.Expiry)
		})
	}
}

func TestJWTExpiry(t *testing.T) {
	for _, tc := range []struct {
		token string
		want  time.Time
		ok    bool
	}{
		{jwt(`{"exp":1700000000}`), time.Unix(1_700_000_000, 0), true},
		{jwt(`{"exp":1700000000.25}`), time.Unix(1_700_000_000, 250_000_000), true},
		{jwt(`{"sub":"x"}`), time.Time{}, false},
		{jwt(`{"exp":"soon"}`), time.Time{}, false},
		{jwt(`{"exp":-1}`), time.Time{}, false},
		{"opaque-token", time.Time{}, false},
		{"a.b", time.Time{}, false},
		{"a.!!!.c", time.Time{}, false},
	} {
		got, ok := JWTExpiry(tc.token)
		assert.Equal(t, tc.ok, ok, tc.token)
		assert.True(t, tc.want.Equal(got), "%s: %v, want %v", tc.token, got, tc.want)
	}
}

func TestEndpointErrorPermanence(t *testing.T) {
	for status, want := range map[int]bool{400: true, 401: true, 403: true, 408: false, 429: false, 500: false, 503: false, 302: false} {
		assert.Equal(t, want, (&EndpointError{Status: status}).Permanent(), "status %d", status)
	}
}

// Refresh against a loopback endpoint: the request it sends for each format, the rotation rule, the
// byte bound, and a refresh token echoed by the server is redacted from the error.
func TestRefresh(t *testing.T) {
	var lastBody, lastType, lastAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		lastBody, lastType, lastAuth = string(b[:n]), r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte(`{"access_token":"new","expires_in":60}`))
		case "/json":
			_, _ = w.Write([]byte(`{"accessToken":"new","refreshToken":"r2"}`))
		case "/echo-error":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"token old-refresh is revoked"}`))
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat(" ", 4096)))
		}
	}))
	defer srv.Close()
	cur := messages.Tokens{Access: "old", Refresh: "old-refresh"}
	cfg := func(path string, f Format) Config {
		return Config{Endpoint: srv.URL + path, Format: f, Client: srv.Client(), MaxBytes: 1024}
	}
	ctx := context.Background()

	c := cfg("/ok", OAuth2)
	c.ClientID, c.ClientSecret = "app", "s3cret"
	got, err := Refresh(ctx, c, cur, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "new", got.Access)
	assert.Equal(t, "old-refresh", got.Refresh, "no new refresh token: the old one stays")
	assert.Equal(t, "grant_type=refresh_token&refresh_token=old-refresh", lastBody)
	assert.Equal(t, "application/x-www-form-urlencoded", lastType)
	assert.True(t, strings.HasPrefix(lastAuth, "Basic "))

	got, err = Refresh(ctx, cfg("/json", JSON), cur, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "r2", got.Refresh)
	assert.JSONEq(t, `{"refreshToken":"old-refresh"}`, lastBody)

	_, err = Refresh(ctx, cfg("/echo-error", OAuth2), cur, time.Now())
	var ee *EndpointError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "invalid_grant", ee.Code)
	assert.NotContains(t, err.Error(), "old-refresh")

	_, err = Refresh(ctx, cfg("/big", OAuth2), cur, time.Now())
	require.ErrorIs(t, err, ErrMalformed)
	assert.False(t, errors.Is(err, context.Canceled))
}

// FuzzParse: no input makes Parse panic, and a success always has an access token.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","refresh_token":"r","expires_in":3600}`), true)
	f.Add([]byte(`{"accessToken":"`+jwt(`{"exp":1e9}`)+`"}`), false)
	f.Add([]byte(`{"access_token":"a","expires_in":"1e400"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, oauth bool) {
		format := JSON
		if oauth {
			format = OAuth2
		}
		tok, err := Parse(format, body, time.Unix(0, 0))
		if err == nil && tok.Access == "" {
			t.Fatal("success without an access token")
		}
	})
}

// FuzzJWTExpiry: no token makes JWTExpiry panic.
func FuzzJWTExpiry(f *testing.F) {
	f.Add(jwt(`{"exp":1700000000}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		if exp, ok := JWTExpiry(token); ok && exp.IsZero() {
			t.Fatal("ok with a zero time")
		}
	})
}
