package fakeapi

import (
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
)

// order is one created order, remembered under its Idempotency-Key.
type order struct {
	body     string        // the request body it was created from
	done     chan struct{} // closed once created
	response []byte        // the 201 answer, replayed for a retry with the same key
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
