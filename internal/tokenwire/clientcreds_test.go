package tokenwire

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What FetchClientCredentials sends for each client authentication method, and how it reads answers.
func TestFetchClientCredentials(t *testing.T) {
	type seen struct {
		form       url.Values
		user, pass string
		basic      bool
	}
	var last seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		last = seen{form: r.PostForm}
		last.user, last.pass, last.basic = r.BasicAuth()
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"cc-token","token_type":"bearer","expires_in":60,"refresh_token":"never-kept"}`))
		case "/bad-secret":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"secret s3cret-value-long is wrong"}`))
		}
	}))
	defer srv.Close()
	now := time.Unix(1_700_000_000, 0)
	base := ClientCredentials{Client: srv.Client(), MaxBytes: 1024, ClientID: "svc a", ClientSecret: "s3cret-value-long"}

	for _, tc := range []struct {
		name      string
		auth      ClientAuth
		scopes    []string
		audience  string
		resources []string
		want      url.Values // the form fields expected (besides none other)
		wantBasic bool
	}{
		{"basic, no extras", AuthBasic, nil, "", nil, url.Values{"grant_type": {"client_credentials"}}, true},
		{"post with scopes, audience and resources", AuthPost, []string{"read", "write"}, "https://api", []string{"https://a", "https://b"},
			url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc a"}, "client_secret": {"s3cret-value-long"},
				"scope": {"read write"}, "audience": {"https://api"}, "resource": {"https://a", "https://b"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Endpoint, c.Auth, c.Scopes, c.Audience, c.Resources = srv.URL+"/ok", tc.auth, tc.scopes, tc.audience, tc.resources
			a, err := FetchClientCredentials(context.Background(), c, now)
			require.NoError(t, err)
			assert.Equal(t, "cc-token", a.Tokens.Access)
			assert.Empty(t, a.Tokens.Refresh, "a refresh token in a client-credentials answer is dropped")
			assert.True(t, now.Add(time.Minute).Equal(a.Tokens.Expiry))
			assert.Equal(t, tc.want, last.form)
			assert.Equal(t, tc.wantBasic, last.basic)
			if tc.wantBasic {
				assert.Equal(t, "svc+a", last.user, "RFC 6749 §2.3.1: form-encoded before Basic")
				assert.Equal(t, "s3cret-value-long", last.pass)
			}
		})
	}

	c := base
	c.Endpoint = srv.URL + "/bad-secret"
	_, err := FetchClientCredentials(context.Background(), c, now)
	var ee *EndpointError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "invalid_client", ee.Code)
	assert.False(t, ee.Permanent(), "invalid_client says nothing about a grant: the session stays")
	assert.NotContains(t, err.Error(), "s3cret-value-long", "an echoed client secret is redacted")
}
