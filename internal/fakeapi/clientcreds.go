package fakeapi

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientAuth is how a registered client must authenticate to the token endpoint.
type ClientAuth int

const (
	// ClientSecretBasic: client_id and client_secret in an HTTP Basic header (RFC 6749 §2.3.1).
	ClientSecretBasic ClientAuth = iota
	// ClientSecretPost: client_id and client_secret as form fields.
	ClientSecretPost
)

// ClientGrant is one client-credentials request the token endpoint accepted: what the client asked
// for, never its secret.
type ClientGrant struct {
	ClientID  string
	Auth      ClientAuth
	Scope     string
	Audience  string
	Resources []string
}

// clients holds the registered confidential clients and what they were issued. The zero value is
// ready to use.
type clients struct {
	mu      sync.Mutex // guards byID and grants
	byID    map[string]*client
	grants  []ClientGrant
	calls   atomic.Int64 // client-credentials requests received
	fetches atomic.Int64 // access tokens issued to clients
}

type client struct {
	secret string
	auth   ClientAuth
	family uint64 // the family its access tokens belong to (never revoked by rotation: there is none)
}

// RegisterClient lets clientID fetch access tokens with grant_type=client_credentials at the
// RFC 6749 token endpoint, authenticating with secret by auth (a request using the other method is
// refused with invalid_client, as a server that registered the client's method does). Tokens live
// Options.AccessTTL, like those of a sign-in.
func (s *Server) RegisterClient(clientID, secret string, auth ClientAuth) {
	s.mu.Lock()
	s.nextFam++
	fam := s.nextFam
	s.families[fam] = &family{}
	s.mu.Unlock()
	s.clients.mu.Lock()
	defer s.clients.mu.Unlock()
	if s.clients.byID == nil {
		s.clients.byID = map[string]*client{}
	}
	s.clients.byID[clientID] = &client{secret: secret, auth: auth, family: fam}
}

// ClientCredentialsCalls is how many client-credentials requests reached the token endpoint,
// accepted or not.
func (s *Server) ClientCredentialsCalls() int64 { return s.clients.calls.Load() }

// ClientTokens is how many access tokens the client-credentials grant issued.
func (s *Server) ClientTokens() int64 { return s.clients.fetches.Load() }

// ClientGrants returns every accepted client-credentials request, in order.
func (s *Server) ClientGrants() []ClientGrant {
	s.clients.mu.Lock()
	defer s.clients.mu.Unlock()
	return append([]ClientGrant(nil), s.clients.grants...)
}

// Authenticate checks an access token as the API does (issued, not expired, family not revoked)
// and returns its user: for servers in tests that speak another protocol (gRPC) over the same tokens.
// It counts as an API request carrying tok.
func (s *Server) Authenticate(tok string) (user string, ok bool) {
	s.apiRequests.Add(1)
	s.mu.Lock()
	if tok != "" {
		s.perToken[tok]++
	}
	rec, found := s.access[tok]
	ok = found && time.Now().Before(rec.expires) && !s.families[rec.family].revoked
	s.mu.Unlock()
	if !ok {
		s.unauthorized.Add(1)
		return "", false
	}
	return rec.user, true
}

// handleClientCredentials answers grant_type=client_credentials (RFC 6749 §4.4): the client is
// authenticated by the one method it registered, then gets an access token and no refresh token.
// r.PostForm is parsed already.
func (s *Server) handleClientCredentials(w http.ResponseWriter, r *http.Request) {
	s.clients.calls.Add(1)
	id, secret, basic := r.BasicAuth()
	auth := ClientSecretBasic
	if basic {
		// §2.3.1: the Basic credentials are form-encoded first.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "malformed client credentials")
			return
		}
		if r.PostForm.Has("client_secret") {
			oauthError(w, http.StatusBadRequest, "invalid_request", "more than one client authentication method")
			return
		}
	} else {
		auth = ClientSecretPost
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.clients.mu.Lock()
	c := s.clients.byID[id]
	s.clients.mu.Unlock()
	if c == nil || c.auth != auth || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	s.mu.Lock()
	t := s.issueLocked(id, c.family)
	delete(s.refresh, t.Refresh) // the grant issues no refresh token
	s.mu.Unlock()
	s.clients.fetches.Add(1)
	s.clients.mu.Lock()
	s.clients.grants = append(s.clients.grants, ClientGrant{ClientID: id, Auth: auth, Scope: r.PostForm.Get("scope"),
		Audience: r.PostForm.Get("audience"), Resources: r.PostForm["resource"]})
	s.clients.mu.Unlock()
	ans := map[string]any{"access_token": t.Access, "token_type": "Bearer"}
	if !s.opts.Opaque {
		ans["expires_in"] = int64(s.opts.AccessTTL / time.Second)
		if s.opts.AccessTTL < time.Second {
			ans["expires_in"] = s.opts.AccessTTL.Seconds()
		}
	}
	if scope := r.PostForm.Get("scope"); scope != "" {
		ans["scope"] = strings.Join(strings.Fields(scope), " ")
	}
	writeJSON(w, http.StatusOK, ans)
}
