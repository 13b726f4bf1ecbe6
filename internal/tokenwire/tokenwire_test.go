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

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func jwt(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
}

func TestParse(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name    string
		format  Format
		ctype   string
		body    string
		want    messages.Tokens
		wantErr error
	}{
		{"oauth2 with expires_in", OAuth2, "", `{"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"Bearer"}`,
			messages.Tokens{Access: "a", Refresh: "r", Expiry: now.Add(time.Hour)}, nil},
		{"oauth2 expires_in as string", OAuth2, "", `{"access_token":"a","expires_in":"60"}`,
			messages.Tokens{Access: "a", Expiry: now.Add(time.Minute)}, nil},
		{"oauth2 fractional expires_in", OAuth2, "", `{"access_token":"a","expires_in":1.5}`,
			messages.Tokens{Access: "a", Expiry: now.Add(1500 * time.Millisecond)}, nil},
		{"oauth2 no expiry", OAuth2, "", `{"access_token":"a"}`, messages.Tokens{Access: "a"}, nil},
		{"json seed format", JSON, "", `{"accessToken":"a","refreshToken":"r"}`, messages.Tokens{Access: "a", Refresh: "r"}, nil},
		{"json with JWT exp", JSON, "", `{"accessToken":"` + jwt(`{"exp":1700000100}`) + `","refreshToken":"r"}`,
			messages.Tokens{Access: jwt(`{"exp":1700000100}`), Refresh: "r", Expiry: time.Unix(1_700_000_100, 0)}, nil},
		{"expires_in wins over JWT", OAuth2, "", `{"access_token":"` + jwt(`{"exp":1}`) + `","expires_in":10}`,
			messages.Tokens{Access: jwt(`{"exp":1}`), Expiry: now.Add(10 * time.Second)}, nil},
		{"form answer, as x/oauth2 reads it", OAuth2, form, "access_token=a%2Bb&refresh_token=r&expires_in=60&token_type=bearer",
			messages.Tokens{Access: "a+b", Refresh: "r", Expiry: now.Add(time.Minute)}, nil},
		{"text/plain form answer", OAuth2, "text/plain; charset=utf-8", "access_token=a&token_type=Bearer", messages.Tokens{Access: "a"}, nil},
		{"padded b64token", OAuth2, "", `{"access_token":"YWJj=="}`, messages.Tokens{Access: "YWJj=="}, nil},
		{"wrong format's fields", JSON, "", `{"access_token":"a"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"no access token", OAuth2, "", `{"refresh_token":"r"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"negative expires_in", OAuth2, "", `{"access_token":"a","expires_in":-5}`, messages.Tokens{}, ErrMalformedAnswer},
		{"absurd expires_in", OAuth2, "", `{"access_token":"a","expires_in":1e12}`, messages.Tokens{}, ErrMalformedAnswer},
		{"expires_in not a number", OAuth2, form, "access_token=a&expires_in=soon", messages.Tokens{}, ErrMalformedAnswer},
		{"captive portal", OAuth2, "text/html", `<html>`, messages.Tokens{}, ErrMalformedAnswer},
		{"not JSON", OAuth2, "", `<html>`, messages.Tokens{}, ErrMalformedAnswer},
		{"truncated", OAuth2, "", `{"access_token":"a`, messages.Tokens{}, ErrMalformedAnswer},
		{"access token of the wrong type", OAuth2, "", `{"access_token":5}`, messages.Tokens{}, ErrMalformedAnswer},
		{"CR LF in the access token", OAuth2, "", `{"access_token":"a\r\nX-Evil: 1"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"space in the access token", OAuth2, "", `{"access_token":"a b"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"non-ASCII access token", OAuth2, "", `{"access_token":"aé"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"padding inside the access token", OAuth2, "", `{"access_token":"a=b"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"only padding", OAuth2, "", `{"access_token":"=="}`, messages.Tokens{}, ErrMalformedAnswer},
		{"control character in the refresh token", JSON, "", `{"accessToken":"a","refreshToken":"r\u0000"}`, messages.Tokens{}, ErrMalformedAnswer},
		{"LF in a form refresh token", OAuth2, form, "access_token=a&refresh_token=r%0A", messages.Tokens{}, ErrMalformedAnswer},
		{"DPoP token", OAuth2, "", `{"access_token":"a","token_type":"DPoP"}`, messages.Tokens{}, ErrUnsupportedTokenType},
		{"MAC token in a form", OAuth2, form, "access_token=a&token_type=mac", messages.Tokens{}, ErrUnsupportedTokenType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.format, tc.ctype, []byte(tc.body), now)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.NotContains(t, err.Error(), `"a`, "errors do not quote the answer")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, BearerType, got.Type)
			assert.Equal(t, tc.want.Access, got.Tokens.Access)
			assert.Equal(t, tc.want.Refresh, got.Tokens.Refresh)
			assert.True(t, tc.want.Expiry.Equal(got.Tokens.Expiry), "expiry %v, want %v", got.Tokens.Expiry, tc.want.Expiry)
		})
	}
}

// The classes of failure the token actor tells apart: a malformed answer (a failed refresh that may
// pass) is not a session end, a token type the engine cannot send is.
func TestParseErrorClasses(t *testing.T) {
	_, err := Parse(OAuth2, "text/html", []byte("<html>sign in to the Wi-Fi</html>"), time.Now())
	require.ErrorIs(t, err, ErrMalformedAnswer)
	assert.NotErrorIs(t, err, messages.ErrSessionExpired)
	assert.ErrorIs(t, err, retry.ErrMalformedAnswer, "the one classifier retries it")
	assert.Contains(t, err.Error(), "text/html, not JSON")

	_, err = Parse(OAuth2, "", []byte(`{"access_token":"abc\r\ndef"}`), time.Now())
	var ite *InvalidTokenError
	require.ErrorAs(t, err, &ite)
	assert.Equal(t, InvalidTokenError{Field: "access token", Offset: 3, Char: "CR"}, *ite)
	assert.NotContains(t, err.Error(), "abc")

	_, err = Parse(OAuth2, "", []byte(`{"access_token":"abc","token_type":"DPoP"}`), time.Now())
	var tte *TokenTypeError
	require.ErrorAs(t, err, &tte)
	assert.Equal(t, "DPoP", tte.Type)
	assert.ErrorIs(t, err, messages.ErrSessionExpired, "no retry can make the engine send a DPoP token")
	assert.NotErrorIs(t, err, ErrMalformedAnswer)
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
	for _, tc := range []struct {
		status int
		code   string
		want   bool
	}{
		{400, InvalidGrant, true},
		{401, InvalidGrant, true},
		{400, "", false},
		{400, "invalid_request", false},
		{401, "invalid_client", false},
		{403, "", false},
		{404, "", false},
		{408, InvalidGrant, false},
		{429, InvalidGrant, false},
		{500, InvalidGrant, false},
		{503, "", false},
		{302, "", false},
	} {
		assert.Equal(t, tc.want, (&EndpointError{Status: tc.status, Code: tc.code}).Permanent(), "status %d %q", tc.status, tc.code)
	}
	status, wait := (&EndpointError{Status: 503, RetryAfter: time.Second}).HTTPStatus()
	assert.Equal(t, 503, status)
	assert.Equal(t, time.Second, wait)
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
	require.ErrorIs(t, err, ErrMalformedAnswer)
	assert.False(t, errors.Is(err, context.Canceled))
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
