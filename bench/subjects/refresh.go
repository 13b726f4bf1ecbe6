package subjects

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// refreshOAuth2 spends refreshToken at tokenURL (RFC 6749 §6) and returns the new pair. It is the
// refresh call of the hand-written wrappers; x/oauth2 and the engine use their own.
func refreshOAuth2(ctx context.Context, hc *http.Client, tokenURL, refreshToken string) (Tokens, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return Tokens{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Tokens{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Tokens{}, fmt.Errorf("subjects: refresh: status %d: %s", resp.StatusCode, body)
	}
	var ans struct {
		Access    string  `json:"access_token"`
		Refresh   string  `json:"refresh_token"`
		ExpiresIn float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.Access == "" {
		return Tokens{}, fmt.Errorf("subjects: refresh: unreadable answer %q", body)
	}
	t := Tokens{Access: ans.Access, Refresh: ans.Refresh}
	if ans.ExpiresIn > 0 {
		t.Expiry = time.Now().Add(time.Duration(ans.ExpiresIn * float64(time.Second)))
	}
	return t, nil
}

// guardedTokens is the smallest correct refresh-on-401 wrapper for a peer without one: refreshes
// are serialised by a mutex, and a refresh is skipped when the access token that met the 401 was
// already replaced. It is what the retryablehttp and resty subjects use.
type guardedTokens struct {
	hc       *http.Client
	tokenURL string

	mu  sync.Mutex // guards tok; held during a refresh, so late callers wait for it
	tok Tokens
}

func newGuardedTokens(env Env) *guardedTokens {
	return &guardedTokens{hc: &http.Client{Transport: env.Transport, Timeout: 30 * time.Second}, tokenURL: env.TokenURL, tok: env.Tokens}
}

// access returns the current access token.
func (g *guardedTokens) access() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tok.Access
}

// renew refreshes the credentials after a 401 to a request that carried the access token used,
// unless they were already replaced.
func (g *guardedTokens) renew(ctx context.Context, used string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tok.Access != used {
		return nil
	}
	t, err := refreshOAuth2(ctx, g.hc, g.tokenURL, g.tok.Refresh)
	if err != nil {
		return err
	}
	if t.Refresh == "" {
		t.Refresh = g.tok.Refresh
	}
	g.tok = t
	return nil
}

// usedAccess is the access token a request carried in its Authorization header.
func usedAccess(req *http.Request) string {
	if req == nil {
		return ""
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return tok
}
