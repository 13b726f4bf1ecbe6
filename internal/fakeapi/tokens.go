package fakeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/resilientclient/resilient/messages"
)

type accessRecord struct {
	user    string
	family  uint64
	expires time.Time
}

type refreshRecord struct {
	user   string
	family uint64
	used   bool
	usedAt time.Time       // when it was rotated
	next   messages.Tokens // the pair it was rotated into, replayed within Options.ReuseGrace
}

type family struct {
	revoked bool
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

// refreshCall counts a token endpoint call, and the calls in flight at once (their peak), until the
// function it returns is called.
func (s *Server) refreshCall() (done func()) {
	s.refreshCalls.Add(1)
	n := s.refreshInFlight.Add(1)
	for peak := s.refreshPeak.Load(); n > peak && !s.refreshPeak.CompareAndSwap(peak, n); peak = s.refreshPeak.Load() {
	}
	return func() {
		s.refreshInFlight.Add(-1)
		s.tokenDone.Add(1)
	}
}

func (s *Server) handleOAuth2(w http.ResponseWriter, r *http.Request) {
	defer s.refreshCall()()
	if !s.misbehave(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	if r.PostForm.Get("grant_type") == "client_credentials" {
		s.handleClientCredentials(w, r)
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
	if s.loseAnswer(w) {
		return
	}
	ans := map[string]any{"access_token": t.Access, "token_type": "Bearer", "refresh_token": t.Refresh}
	if !s.opts.Opaque {
		ans["expires_in"] = int64(s.opts.AccessTTL / time.Second)
		if s.opts.AccessTTL < time.Second {
			ans["expires_in"] = s.opts.AccessTTL.Seconds()
		}
	}
	if s.opts.FormAnswers {
		vals := url.Values{"token_type": {"bearer"}}
		for k, v := range ans {
			if k != "token_type" {
				vals.Set(k, fmt.Sprint(v))
			}
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte(vals.Encode()))
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handleJSONRefresh(w http.ResponseWriter, r *http.Request) {
	defer s.refreshCall()()
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
	if s.loseAnswer(w) {
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
		if s.opts.ReuseGrace > 0 && time.Since(rec.usedAt) <= s.opts.ReuseGrace {
			s.graceReplays.Add(1)
			return rec.next, "", ""
		}
		s.reuseDetected.Add(1)
		s.revokeLocked(rec.family)
		return messages.Tokens{}, "invalid_grant", "refresh token reused: family revoked"
	}
	rec.used, rec.usedAt = true, time.Now()
	rec.next = s.issueLocked(rec.user, rec.family)
	return rec.next, "", ""
}

// SetTokenAnswerLoss makes the next n refreshes rotate the refresh token and then close the
// connection instead of answering: the server has spent the token, the client never learns the new
// pair and can only replay the old one (see Options.ReuseGrace). 0 turns it off.
func (s *Server) SetTokenAnswerLoss(n int) {
	s.mu.Lock()
	s.loseRefs = n
	s.mu.Unlock()
}

// loseAnswer first waits SetTokenAnswerDelay's delay (the pair is rotated already), then reports
// whether this refresh's answer is to be lost (counting it), and if so closes the connection under w.
func (s *Server) loseAnswer(w http.ResponseWriter) bool {
	s.mu.Lock()
	late := s.knobs.lateBy
	s.mu.Unlock()
	if late > 0 {
		s.sleep(context.Background(), late) // rotated already; the client may be gone when it ends
	}
	s.mu.Lock()
	lose := s.loseRefs > 0
	if lose {
		s.loseRefs--
	}
	s.mu.Unlock()
	if !lose {
		return false
	}
	s.lostAnswers.Add(1)
	_ = hijack(w).Close()
	return true
}

func (s *Server) revokeLocked(fam uint64) {
	if f := s.families[fam]; f != nil && !f.revoked {
		f.revoked = true
		s.revocations.Add(1)
	}
}
