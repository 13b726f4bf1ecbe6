package subjects

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

func naiveSubject() Subject {
	return Subject{
		Name: "naive",
		Setup: "A hand-written `http.RoundTripper` as often found in the wild: attach the current token; on a 401, refresh with the refresh token " +
			"it holds and resend once. Nothing stops two requests from refreshing at once; no retries.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			t := newOn401Transport(env, func(t *on401Transport, ctx context.Context, _ string) error {
				t.mu.Lock()
				rt := t.tok.Refresh
				t.mu.Unlock()
				return t.refreshWith(ctx, rt)
			})
			return &httpClient{c: &http.Client{Transport: t}}, nil
		},
	}
}

func singleflightSubject() Subject {
	return Subject{
		Name: "singleflight",
		Setup: "The same `RoundTripper` with the refresh behind `golang.org/x/sync/singleflight`, keyed by the access token that met the 401, " +
			"and skipped when that token was already replaced: one refresh per token, however many 401s. No retries.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			var group singleflight.Group
			t := newOn401Transport(env, func(t *on401Transport, ctx context.Context, used string) error {
				_, err, _ := group.Do(used, func() (any, error) {
					t.mu.Lock()
					current, rt := t.tok.Access, t.tok.Refresh
					t.mu.Unlock()
					if current != used {
						return nil, nil // replaced while this caller was on its way
					}
					// The refresh belongs to every caller of the group: one caller's cancellation
					// must not fail the others.
					ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
					defer cancel()
					return nil, t.refreshWith(ctx, rt)
				})
				return err
			})
			return &httpClient{c: &http.Client{Transport: t}}, nil
		},
	}
}

// on401Transport attaches the current access token and, after a 401, calls renew and resends the
// request once with whatever token is current then.
type on401Transport struct {
	base  http.RoundTripper
	hc    *http.Client // for refresh calls
	url   string
	renew func(t *on401Transport, ctx context.Context, used string) error

	mu  sync.Mutex // guards tok
	tok Tokens
}

func newOn401Transport(env Env, renew func(*on401Transport, context.Context, string) error) *on401Transport {
	return &on401Transport{base: env.Transport, hc: &http.Client{Transport: env.Transport, Timeout: 30 * time.Second}, url: env.TokenURL, renew: renew, tok: env.Tokens}
}

// refreshWith spends refresh token rt and stores the new pair.
func (t *on401Transport) refreshWith(ctx context.Context, rt string) error {
	nt, err := refreshOAuth2(ctx, t.hc, t.url, rt)
	if err != nil {
		return err
	}
	if nt.Refresh == "" {
		nt.Refresh = rt
	}
	t.mu.Lock()
	t.tok = nt
	t.mu.Unlock()
	return nil
}

func (t *on401Transport) access() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tok.Access
}

// RoundTrip implements http.RoundTripper. It never changes req: each attempt is a clone.
func (t *on401Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	used := t.access()
	resp, err := t.base.RoundTrip(withAuth(req, used, req.Body))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // cannot resend: the caller gets the 401
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err := t.renew(t, req.Context(), used); err != nil {
		return nil, err
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return t.base.RoundTrip(withAuth(req, t.access(), body))
}

// withAuth returns a clone of req carrying access token tok and body.
func withAuth(req *http.Request, tok string, body io.ReadCloser) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", bearer(tok))
	return r
}

// httpClient is a Client that is an *http.Client whose transport does the work.
type httpClient struct{ c *http.Client }

func (h *httpClient) Do(ctx context.Context, r Request) (int, error) { return send(ctx, h.c, r, "") }

func (h *httpClient) Close(context.Context) error { return nil }
