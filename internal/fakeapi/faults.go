package fakeapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tokenKnobs make the token endpoint misbehave; see the Set* methods.
type tokenKnobs struct {
	delay     time.Duration
	failCode  int
	failBody  string
	failTimes int    // -1: every call; n>0: the next n calls
	failType  string // the failure's Content-Type ("" : application/json)
	hang      bool
	garbage   int64         // bytes of unterminated JSON to stream with a 200
	hold      chan struct{} // non-nil: calls wait until it is closed (HoldTokenCalls)
	lateBy    time.Duration // a successful refresh rotates, then waits this long to answer (SetTokenAnswerDelay)
}

// apiFailure makes API endpoints answer a status before doing anything; see SetAPIFailure.
type apiFailure struct {
	status     int
	retryAfter string
	times      int // -1: every request; n>0: the next n
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
	s.SetTokenAnswer(status, "application/json", body, times)
}

// SetTokenAnswer is SetTokenFailure with the answer's Content-Type: a 200 text/html page is what a
// captive portal answers, a 200 JSON answer with a bad token is a broken server. No refresh token
// is spent by such an answer. times == 0 turns it off.
func (s *Server) SetTokenAnswer(status int, contentType, body string, times int) {
	s.mu.Lock()
	s.knobs.failCode, s.knobs.failBody, s.knobs.failTimes, s.knobs.failType = status, body, times, contentType
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

// SetTokenAnswerDelay makes a successful refresh rotate the refresh token at once and answer d
// later: a client that dies (or gives up) meanwhile has spent its refresh token without learning
// the new pair, as a replica killed after the token endpoint answered but before it stored the
// answer. 0 ends it.
func (s *Server) SetTokenAnswerDelay(d time.Duration) {
	s.mu.Lock()
	s.knobs.lateBy = d
	s.mu.Unlock()
}

// SetAPIDelay makes every API (non-token) call wait d before answering; the wait ends early if the
// client goes away or the server closes.
func (s *Server) SetAPIDelay(d time.Duration) {
	s.mu.Lock()
	s.apiDelay = d
	s.mu.Unlock()
}

// misbehave applies the knobs; it returns false when it has answered (or must not answer) itself.
func (s *Server) misbehave(w http.ResponseWriter, r *http.Request) bool {
	// Read the body first: net/http ends r.Context() when the client goes away only once the body
	// is read, and the waits below must end then (a client killed mid-call spends no token).
	if body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20)); err == nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
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
		w.Header().Set("Content-Type", k.failType)
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

// instead of an answer.
func resetConnection(w http.ResponseWriter) {
	conn := hijack(w)
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST, not FIN
	}
	_ = conn.Close()
}

// hijack takes the connection of the request w answers, to close it without an answer. A server
// that cannot hand it over aborts the handler instead (net/http then drops the connection too).
func hijack(w http.ResponseWriter) net.Conn {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return conn
}
