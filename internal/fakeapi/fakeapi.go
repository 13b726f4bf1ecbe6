// Package fakeapi is a realistic token-protected REST API that runs in-process on loopback, for the
// engine's tests, the demo and the benchmarks.
//
// It behaves like the servers the engine meets in production:
//   - access tokens live for a real TTL (JWTs with an exp claim, or opaque strings that reveal nothing);
//   - refresh tokens rotate on every use, and replaying a used one is treated as theft: the whole token
//     family is revoked (RFC 9700 §4.14.2), so a client that refreshes twice with one token is caught;
//     a reuse grace period (Options.ReuseGrace) answers a replay of a just-rotated token with the same
//     new pair instead, and SetTokenAnswerLoss rotates and then drops the answer;
//   - both refresh formats: RFC 6749 §6 at /oauth/token and the seed app's JSON at /auth/refresh;
//   - knobs make the token endpoint slow, fail with any status, hang, or stream garbage, and make the
//     API fail (with or without Retry-After) or lose the answers of the orders it creates;
//   - POST /orders honours Idempotency-Key (replay, 409 while in progress, 422 for another body);
//   - counters say what happened: refresh calls, 401s, requests per token, revocations.
//   - for benchmarks: token calls can be held until released, a random fraction of API requests can
//     fail (503) or lose their answer (connection reset after the work is done), duplicate orders are
//     counted, and Handler serves the API without a socket.
//
// A Server is safe for concurrent use.
package fakeapi

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. Zero values mean the defaults given on each field.
type Options struct {
	// AccessTTL is how long an access token is accepted. Default: one minute.
	AccessTTL time.Duration
	// Opaque makes access tokens random strings and leaves expires_in out of token answers, so a
	// client learns that a token expired only from a 401.
	Opaque bool
	// ReuseGrace is how long a rotated refresh token may be replayed: within it, the replay gets the
	// same new pair back instead of revoking the family, as Okta's grace period and Auth0's reuse
	// interval do for a client whose answer was lost. 0: no grace; any replay revokes the family and
	// is answered invalid_grant (RFC 9700 §4.14.2).
	ReuseGrace time.Duration
	// FormAnswers makes the RFC 6749 endpoint answer application/x-www-form-urlencoded fields, with
	// token_type "bearer" in lower case, as some older servers do (golang.org/x/oauth2 reads them).
	FormAnswers bool
	// Observe, when set, sees every request before it is handled (on the handler's goroutine), for
	// tests that check what reached the server: trace headers, keys, tokens. It must not keep r.
	Observe func(r *http.Request)
}

// Server is the fake API. Start one with Start and stop it with Close.
type Server struct {
	opts Options
	http *httptest.Server
	done chan struct{} // closed by Close: wakes every hanging handler

	mu       sync.Mutex // guards the maps below and the knobs
	access   map[string]accessRecord
	refresh  map[string]*refreshRecord
	families map[uint64]*family
	perToken map[string]int64
	nextFam  uint64
	knobs    tokenKnobs
	apiDelay time.Duration
	items    map[string]json.RawMessage
	apiFail  apiFailure
	orders   map[string]*order // by user + "/" + Idempotency-Key
	nOrders  int64             // orders created: the side effects a duplicate would multiply
	loseNext int               // the next n orders are committed, then answered 503
	loseRefs int               // the next n refreshes rotate, then their connection is closed
	orderLag time.Duration     // how long creating an order takes
	issued   []string          // every access and refresh token ever issued, in order
	ordered  map[string]int    // orders created, by user + "\x00" + request body
	dupes    int64             // orders whose user and body were already ordered

	refreshCalls    atomic.Int64
	refreshInFlight atomic.Int64 // token endpoint calls being handled
	refreshPeak     atomic.Int64 // the most of them at once
	apiRequests     atomic.Int64
	unauthorized    atomic.Int64
	revocations     atomic.Int64
	reuseDetected   atomic.Int64
	graceReplays    atomic.Int64
	lostAnswers     atomic.Int64
	tokenDone       atomic.Int64              // token endpoint answers completed (including failures)
	flaky           atomic.Pointer[Flakiness] // nil: no random failures
	flaky503        atomic.Int64              // API requests answered 503 by Flakiness
	flakyResets     atomic.Int64              // API requests whose connection Flakiness reset
	clients         clients                   // the client-credentials grant's clients (clientcreds.go)
}

// Start runs a Server on a loopback port.
func Start(opts Options) *Server {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = time.Minute
	}
	s := &Server{
		opts:     opts,
		done:     make(chan struct{}),
		access:   map[string]accessRecord{},
		refresh:  map[string]*refreshRecord{},
		families: map[uint64]*family{},
		perToken: map[string]int64{},
		items:    map[string]json.RawMessage{},
		orders:   map[string]*order{},
		ordered:  map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", s.handleOAuth2)
	mux.HandleFunc("POST /auth/refresh", s.handleJSONRefresh)
	mux.HandleFunc("GET /me", s.authed(s.handleMe))
	mux.HandleFunc("GET /items/{id}", s.authed(s.handleGetItem))
	mux.HandleFunc("PUT /items/{id}", s.authed(s.handlePutItem))
	mux.HandleFunc("POST /echo", s.authed(s.handleEcho))
	mux.HandleFunc("POST /orders", s.authed(s.handleCreateOrder))
	mux.HandleFunc("GET /public/status", s.handleStatus)
	var h http.Handler = mux
	if opts.Observe != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			opts.Observe(r)
			mux.ServeHTTP(w, r)
		})
	}
	s.http = httptest.NewServer(h)
	return s
}

// URL is the API's base URL, http://127.0.0.1:port.
func (s *Server) URL() string { return s.http.URL }

// OAuth2TokenURL is the RFC 6749 token endpoint.
func (s *Server) OAuth2TokenURL() string { return s.http.URL + "/oauth/token" }

// JSONRefreshURL is the seed-format refresh endpoint.
func (s *Server) JSONRefreshURL() string { return s.http.URL + "/auth/refresh" }

// Close wakes every hanging handler and stops the server.
func (s *Server) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.http.CloseClientConnections()
	s.http.Close()
}

// Stats is a snapshot of the counters.
type Stats struct {
	RefreshCalls  int64 // token endpoint calls received, either format
	PeakRefreshes int64 // the most token endpoint calls in flight at once
	TokenAnswers  int64 // token endpoint calls answered (success or failure)
	APIRequests   int64 // API calls received, valid token or not
	Unauthorized  int64 // API calls answered 401
	Revocations   int64 // token families revoked
	ReuseDetected int64 // refresh tokens replayed after use, outside any grace period
	GraceReplays  int64 // refresh tokens replayed within ReuseGrace, answered with the same pair
	LostAnswers   int64 // refreshes whose answer SetTokenAnswerLoss dropped after rotating
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		RefreshCalls:  s.refreshCalls.Load(),
		PeakRefreshes: s.refreshPeak.Load(),
		TokenAnswers:  s.tokenDone.Load(),
		APIRequests:   s.apiRequests.Load(),
		Unauthorized:  s.unauthorized.Load(),
		Revocations:   s.revocations.Load(),
		ReuseDetected: s.reuseDetected.Load(),
		GraceReplays:  s.graceReplays.Load(),
		LostAnswers:   s.lostAnswers.Load(),
	}
}

// IssuedTokens returns every access and refresh token the server ever issued (by Login or by a
// refresh), in the order they were issued: the secrets a test checks never leak.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// RequestsWithToken says how many API calls carried access token tok (valid or not).
func (s *Server) RequestsWithToken(tok string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perToken[tok]
}

// Handler is the API's handler, for a client that serves it without a socket (an in-memory
// http.RoundTripper). Counters and knobs apply as over loopback.
func (s *Server) Handler() http.Handler { return s.http.Config.Handler }

// Orders is how many orders were created (each one a side effect).
func (s *Server) Orders() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nOrders
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// problem answers an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// jwtLike builds a token shaped like a JWT whose payload carries sub and exp. The server looks tokens
// up in its table, so the signature part is only a unique random string.
func jwtLike(user string, expires time.Time, unique string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload := enc.EncodeToString(fmt.Appendf(nil, `{"sub":%q,"exp":%.3f}`, user, float64(expires.UnixMilli())/1000))
	return header + "." + payload + "." + unique
}
