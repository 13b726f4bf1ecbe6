package fakeapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client-credentials grant: each client authenticates only by the method it registered, with
// its own secret; a token it gets opens the API and carries no refresh token.
func TestClientCredentials(t *testing.T) {
	s := Start(Options{})
	defer s.Close()
	s.RegisterClient("basic-client", "basic-secret", ClientSecretBasic)
	s.RegisterClient("post-client", "post-secret", ClientSecretPost)

	post := func(form url.Values, basicID, basicSecret string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, s.OAuth2TokenURL(), strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basicID != "" {
			req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, body
	}
	grant := url.Values{"grant_type": {"client_credentials"}}
	withPost := func(id, secret string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret},
			"scope": {"read write"}, "resource": {"https://a", "https://b"}}
	}
	for _, tc := range []struct {
		name              string
		form              url.Values
		basicID, basicSec string
		wantStatus        int
		wantCode          string
	}{
		{"basic, right secret", grant, "basic-client", "basic-secret", 200, ""},
		{"basic, wrong secret", grant, "basic-client", "nope", 401, "invalid_client"},
		{"basic client using post", withPost("basic-client", "basic-secret"), "", "", 401, "invalid_client"},
		{"post, right secret", withPost("post-client", "post-secret"), "", "", 200, ""},
		{"post, wrong secret", withPost("post-client", "nope"), "", "", 401, "invalid_client"},
		{"post client using basic", grant, "post-client", "post-secret", 401, "invalid_client"},
		{"unknown client", grant, "who", "x", 401, "invalid_client"},
		{"two methods at once", withPost("basic-client", "basic-secret"), "basic-client", "basic-secret", 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.form, tc.basicID, tc.basicSec)
			require.Equal(t, tc.wantStatus, status, "%v", body)
			if tc.wantCode != "" {
				assert.Equal(t, tc.wantCode, body["error"])
				return
			}
			assert.NotContains(t, body, "refresh_token")
			assert.EqualValues(t, 60, body["expires_in"])
			assert.Equal(t, http.StatusOK, get(t, s, body["access_token"].(string)))
		})
	}
	assert.EqualValues(t, 8, s.ClientCredentialsCalls())
	assert.EqualValues(t, 2, s.ClientTokens())
	grants := s.ClientGrants()
	require.Len(t, grants, 2)
	assert.Equal(t, ClientGrant{ClientID: "basic-client", Auth: ClientSecretBasic}, grants[0])
	assert.Equal(t, ClientGrant{ClientID: "post-client", Auth: ClientSecretPost, Scope: "read write",
		Resources: []string{"https://a", "https://b"}}, grants[1])
}
