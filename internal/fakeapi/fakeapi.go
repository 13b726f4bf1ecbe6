// Package fakeapi is a realistic token-protected REST API that runs in-process on loopback, for the
// engine's tests, the demo and the benchmarks.
//
// It behaves like the servers the engine meets in production:
//   - access tokens live for a real TTL (JWTs with an exp claim, or opaque strings that reveal nothing);
//   - refresh tokens rotate on every use, and replaying a used one is treated as theft: the whole token
//     family is revoked (RFC 9700 §4.14.2), so a client that refreshes twice with one token is caught;
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
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/messages"
)

// Options configures a Server. Zero values mean the defaults given on each field.
type Options struct {
	// AccessTTL is how long an access token is accepted. Default: one minute.
	AccessTTL time.Duration
	// Opaque makes access tokens random strings and leaves expires_in out of token answers, so a
	// client learns that a token expired only from a 401.
	Opaque bool
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
	orderLag time.Duration     // how long creating an order takes
	issued   []string          // every access and refresh token ever issued, in order
	ordered  map[string]int    // orders created, by user + "\x00" + request body
	dupes    int64             // orders whose user and body were already ordered

	refreshCalls  atomic.Int64
	apiRequests   atomic.Int64
	unauthorized  atomic.Int64
	revocations   atomic.Int64
	reuseDetected atomic.Int64
	tokenDone     atomic.Int64              // token endpoint answers completed (including failures)
	flaky         atomic.Pointer[Flakiness] // nil: no random failures
	flaky503      atomic.Int64              // API requests answered 503 by Flakiness
	flakyResets   atomic.Int64              // API requests whose connection Flakiness reset
}

type accessRecord struct {
	user    string
	family  uint64
	expires time.Time
}

type refreshRecord struct {
	user   string
	family uint64
	used   bool
}

type family struct {
	revoked bool
}

// tokenKnobs make the token endpoint misbehave; see the Set* methods.
type tokenKnobs struct {
	delay     time.Duration
	failCode  int
	failBody  string
	failTimes int // -1: every call; n>0: the next n calls
	hang      bool
	garbage   int64         // bytes of unterminated JSON to stream with a 200
	hold      chan struct{} // non-nil: calls wait until it is closed (HoldTokenCalls)
}

// apiFailure makes API endpoints answer a status before doing anything; see SetAPIFailure.
type apiFailure struct {
	status     int
	retryAfter string
	times      int // -1: every request; n>0: the next n
}

// order is one created order, remembered under its Idempotency-Key.
type order struct {
	body     string        // the request body it was created from
	done     chan struct{} // closed once created
	response []byte        // the 201 answer, replayed for a retry with the same key
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

// Login starts a new token family for user and returns its first pair, as a sign-in would.
func (s *Server) Login(user string) messages.Tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextFam++
	s.families[s.nextFam] = &family{}
	return s.issueLocked(user, s.nextFam)
}

// issueLocked mints a new access and refresh token in family fam.
func (s *Server) issueLocked(user string, fam uint64) messages.Tokens {
	expires := time.Now().Add(s.opts.AccessTTL)
	access := randomString(16)
	if !s.opts.Opaque {
		access = jwtLike(user, expires, access)
	}
	refresh := randomString(24)
	s.access[access] = accessRecord{user: user, family: fam, expires: expires}
	s.refresh[refresh] = &refreshRecord{user: user, family: fam}
	s.issued = append(s.issued, access, refresh)
	t := messages.Tokens{Access: access, Refresh: refresh}
	if !s.opts.Opaque {
		t.Expiry = expires
	}
	return t
}

// ExpireAccessTokens makes every access token issued so far invalid at once, as if they all reached
// their TTL, without the client knowing.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.access {
		r.expires = time.Now().Add(-time.Second)
		s.access[k] = r
	}
}

// SetTokenDelay makes every token endpoint call wait d before answering.
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	s.knobs.delay = d
	s.mu.Unlock()
}

// SetTokenFailure makes the next times token calls (every call if times < 0) answer status with body
// (application/json) instead of tokens. times == 0 turns failures off.
func (s *Server) SetTokenFailure(status int, body string, times int) {
	s.mu.Lock()
	s.knobs.failCode, s.knobs.failBody, s.knobs.failTimes = status, body, times
	s.mu.Unlock()
}

// SetTokenHang makes token calls hang until the client gives up or the server closes.
func (s *Server) SetTokenHang(hang bool) {
	s.mu.Lock()
	s.knobs.hang = hang
	s.mu.Unlock()
}

// SetTokenGarbage makes token calls answer 200 and stream n bytes of JSON that never ends
// (0 turns it off).
func (s *Server) SetTokenGarbage(n int64) {
	s.mu.Lock()
	s.knobs.garbage = n
	s.mu.Unlock()
}

// HoldTokenCalls makes token endpoint calls wait, before any other knob applies, until the returned
// release function is called, the client gives up, or the server closes. Benchmarks use it to park
// every request behind one refresh before timing the release. Calling release again does nothing.
func (s *Server) HoldTokenCalls() (release func()) {
	hold := make(chan struct{})
	s.mu.Lock()
	s.knobs.hold = hold
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.knobs.hold == hold {
				s.knobs.hold = nil
			}
			s.mu.Unlock()
			close(hold)
		})
	}
}

// SetAPIDelay makes every API (non-token) call wait d before answering; the wait ends early if the
// client goes away or the server closes.
func (s *Server) SetAPIDelay(d time.Duration) {
	s.mu.Lock()
	s.apiDelay = d
	s.mu.Unlock()
}

// Stats is a snapshot of the counters.
type Stats struct {
	RefreshCalls  int64 // token endpoint calls received, either format
	TokenAnswers  int64 // token endpoint calls answered (success or failure)
	APIRequests   int64 // API calls received, valid token or not
	Unauthorized  int64 // API calls answered 401
	Revocations   int64 // token families revoked
	ReuseDetected int64 // refresh tokens replayed after use
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		RefreshCalls:  s.refreshCalls.Load(),
		TokenAnswers:  s.tokenDone.Load(),
		APIRequests:   s.apiRequests.Load(),
		Unauthorized:  s.unauthorized.Load(),
		Revocations:   s.revocations.Load(),
		ReuseDetected: s.reuseDetected.Load(),
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

// ---- token endpoint ----

func (s *Server) handleOAuth2(w http.ResponseWriter, r *http.Request) {
	s.refreshCalls.Add(1)
	defer s.tokenDone.Add(1)
	if !s.misbehave(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	if r.PostForm.Get("grant_type") != "refresh_token" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only refresh_token is supported")
		return
	}
	t, code, desc := s.rotate(r.PostForm.Get("refresh_token"))
	if code != "" {
		oauthError(w, http.StatusBadRequest, code, desc)
		return
	}
	ans := map[string]any{"access_token": t.Access, "token_type": "Bearer", "refresh_token": t.Refresh}
	if !s.opts.Opaque {
		ans["expires_in"] = int64(s.opts.AccessTTL / time.Second)
		if s.opts.AccessTTL < time.Second {
			ans["expires_in"] = s.opts.AccessTTL.Seconds()
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handleJSONRefresh(w http.ResponseWriter, r *http.Request) {
	s.refreshCalls.Add(1)
	defer s.tokenDone.Add(1)
	if !s.misbehave(w, r) {
		return
	}
	var in struct {
		RefreshToken string `json:"refreshToken"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "body must be {\"refreshToken\": ...}"})
		return
	}
	t, code, desc := s.rotate(in.RefreshToken)
	if code != "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": desc})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"accessToken": t.Access, "refreshToken": t.Refresh})
}

// rotate spends a refresh token: a fresh pair in the same family, or an error code. A token that was
// already used revokes its whole family.
func (s *Server) rotate(refresh string) (messages.Tokens, string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.refresh[refresh]
	if !ok {
		return messages.Tokens{}, "invalid_grant", "unknown refresh token"
	}
	fam := s.families[rec.family]
	if fam.revoked {
		return messages.Tokens{}, "invalid_grant", "token family revoked"
	}
	if rec.used {
		s.reuseDetected.Add(1)
		s.revokeLocked(rec.family)
		return messages.Tokens{}, "invalid_grant", "refresh token reused: family revoked"
	}
	rec.used = true
	return s.issueLocked(rec.user, rec.family), "", ""
}

func (s *Server) revokeLocked(fam uint64) {
	if f := s.families[fam]; f != nil && !f.revoked {
		f.revoked = true
		s.revocations.Add(1)
	}
}

// misbehave applies the knobs; it returns false when it has answered (or must not answer) itself.
func (s *Server) misbehave(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	k := s.knobs
	fail := false
	if k.failTimes != 0 {
		fail = true
		if s.knobs.failTimes > 0 {
			s.knobs.failTimes--
		}
	}
	s.mu.Unlock()

	if k.hold != nil {
		select {
		case <-k.hold:
		case <-r.Context().Done():
			return false
		case <-s.done:
			return false
		}
	}
	if k.delay > 0 && !s.sleep(r.Context(), k.delay) {
		return false
	}
	if k.hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return false
	}
	if fail {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(k.failCode)
		_, _ = w.Write([]byte(k.failBody))
		return false
	}
	if k.garbage > 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write([]byte(`{"access_token":"`)); err != nil {
			return false
		}
		chunk := []byte(strings.Repeat("x", 32<<10))
		for sent := int64(0); sent < k.garbage; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return false
			}
		}
		return false
	}
	return true
}

// sleep waits d, or less if the client leaves or the server closes; it reports whether d passed.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// ---- API ----

// SetAPIFailure makes API requests (every endpoint but the token endpoints) answer status, with a
// Retry-After header when retryAfter is not empty, before looking at them: for times requests, or
// every request while times is -1. SetAPIFailure(0, "", 0) ends it.
func (s *Server) SetAPIFailure(status int, retryAfter string, times int) {
	s.mu.Lock()
	s.apiFail = apiFailure{status: status, retryAfter: retryAfter, times: times}
	s.mu.Unlock()
}

// SetOrderLoss makes the next n orders be created and then answered 503, as when a response is lost
// on its way back: a client that retries without an Idempotency-Key creates a duplicate.
func (s *Server) SetOrderLoss(n int) {
	s.mu.Lock()
	s.loseNext = n
	s.mu.Unlock()
}

// SetOrderLatency makes creating an order take d; a retry with the same key meanwhile gets 409.
func (s *Server) SetOrderLatency(d time.Duration) {
	s.mu.Lock()
	s.orderLag = d
	s.mu.Unlock()
}

// Flakiness makes a random fraction of API requests (every endpoint behind a token) fail, as a
// struggling server or network does. The fractions are between 0 and 1; their sum must not exceed 1.
type Flakiness struct {
	// Unavailable is the fraction answered 503, without Retry-After, before anything is done: a
	// retry is harmless.
	Unavailable float64
	// Reset is the fraction that is handled in full (an order is created) and whose connection is
	// then reset instead of answered: the answer is lost, and a retry without an Idempotency-Key
	// creates a duplicate. Without a connection to reset (Handler served without a socket) the
	// handler panics with http.ErrAbortHandler instead.
	Reset float64
}

// SetFlakiness sets the random failures; the zero Flakiness turns them off.
func (s *Server) SetFlakiness(f Flakiness) {
	if f == (Flakiness{}) {
		s.flaky.Store(nil)
		return
	}
	s.flaky.Store(&f)
}

// FlakyCounts says how many API requests Flakiness answered 503 and how many it reset.
func (s *Server) FlakyCounts() (unavailable, resets int64) {
	return s.flaky503.Load(), s.flakyResets.Load()
}

// DuplicateOrders is how many orders repeated an earlier order of the same user with the same
// request body: the duplicates a retry without an Idempotency-Key creates when every logical
// order has a distinct body.
func (s *Server) DuplicateOrders() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dupes
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

// failAPI answers the configured failure, if one is due; it reports whether it answered.
func (s *Server) failAPI(w http.ResponseWriter) bool {
	s.mu.Lock()
	f := s.apiFail
	if f.times > 0 {
		s.apiFail.times--
	}
	s.mu.Unlock()
	if f.times == 0 || f.status == 0 {
		return false
	}
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	problem(w, f.status, "injected failure")
	return true
}

// authed checks the bearer token before running h.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.apiRequests.Add(1)
		if s.failAPI(w) {
			return
		}
		if f := s.flaky.Load(); f != nil {
			switch x := mrand.Float64(); {
			case x < f.Unavailable:
				s.flaky503.Add(1)
				problem(w, http.StatusServiceUnavailable, "injected flaky failure")
				return
			case x < f.Unavailable+f.Reset:
				s.flakyResets.Add(1)
				s.serveAuthed(h, httptest.NewRecorder(), r) // the work is done; its answer is lost
				resetConnection(w)
				return
			}
		}
		s.serveAuthed(h, w, r)
	}
}

// serveAuthed checks the bearer token and runs h.
func (s *Server) serveAuthed(h func(http.ResponseWriter, *http.Request, string), w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	if tok != "" {
		s.perToken[tok]++
	}
	rec, ok := s.access[tok]
	valid := ok && time.Now().Before(rec.expires) && !s.families[rec.family].revoked
	delay := s.apiDelay
	s.mu.Unlock()
	if !valid {
		s.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		problem(w, http.StatusUnauthorized, "invalid or expired access token")
		return
	}
	if delay > 0 && !s.sleep(r.Context(), delay) {
		return
	}
	h(w, r, rec.user)
}

// resetConnection drops the connection under w with a TCP reset, so the client sees ECONNRESET
// instead of an answer.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST, not FIN
	}
	_ = conn.Close()
}

func (s *Server) handleMe(w http.ResponseWriter, _ *http.Request, user string) {
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

func (s *Server) handleGetItem(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	s.mu.Lock()
	stored, ok := s.items[user+"/"+id]
	s.mu.Unlock()
	if !ok {
		if _, err := strconv.Atoi(id); err != nil {
			problem(w, http.StatusNotFound, "no item "+strconv.Quote(id))
			return
		}
		stored, _ = json.Marshal(map[string]any{"id": id, "name": "item " + id, "owner": user})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(stored)
}

func (s *Server) handlePutItem(w http.ResponseWriter, r *http.Request, user string) {
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "body must be JSON")
		return
	}
	s.mu.Lock()
	s.items[user+"/"+r.PathValue("id")] = body
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// handleEcho answers the request body and the user who sent it, to check that bodies survive replays.
func (s *Server) handleEcho(w http.ResponseWriter, r *http.Request, user string) {
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "body must be JSON")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "body": body})
}

// handleCreateOrder creates an order, honouring Idempotency-Key as
// draft-ietf-httpapi-idempotency-key-header says: a retry with the same key and body gets the first
// answer again (no second order), one that arrives while the first is still being processed gets
// 409, and the same key with another body gets 422. Without a key every request is a new order.
func (s *Server) handleCreateOrder(w http.ResponseWriter, r *http.Request, user string) {
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "body must be JSON")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	if prev, ok := s.orders[user+"/"+key]; ok && key != "" {
		s.mu.Unlock()
		select {
		case <-prev.done:
		default:
			problem(w, http.StatusConflict, "a request with this Idempotency-Key is still being processed")
			return
		}
		if prev.body != string(body) {
			problem(w, http.StatusUnprocessableEntity, "this Idempotency-Key was used with another request body")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(prev.response)
		return
	}
	o := &order{body: string(body), done: make(chan struct{})}
	if key != "" {
		s.orders[user+"/"+key] = o
	}
	s.nOrders++
	s.ordered[user+"\x00"+string(body)]++
	if s.ordered[user+"\x00"+string(body)] > 1 {
		s.dupes++
	}
	id := s.nOrders
	lag, lose := s.orderLag, s.loseNext > 0
	if lose {
		s.loseNext--
	}
	s.mu.Unlock()
	if lag > 0 {
		t := time.NewTimer(lag) // the work goes on even if the client gives up
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
		}
	}
	o.response, _ = json.Marshal(map[string]any{"id": id, "owner": user, "order": body})
	close(o.done)
	if lose {
		problem(w, http.StatusServiceUnavailable, "the order was created but the answer was lost")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(o.response)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	s.apiRequests.Add(1)
	if s.failAPI(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "authorization_seen": r.Header.Get("Authorization") != ""})
}

// ---- helpers ----

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
