package subjects

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

func retryableSubject() Subject {
	return Subject{
		Name: "retryablehttp",
		Setup: "`github.com/hashicorp/go-retryablehttp` `NewClient()` defaults (4 retries, 1–30 s exponential backoff, `DefaultRetryPolicy`: errors, 429, 5xx but 501), " +
			"`Logger` nil, the shared transport in `HTTPClient`. It has no refresh: the wrapper uses its documented hooks: `CheckRetry` refreshes on a 401 " +
			"(mutex; skipped when the token was already replaced) and asks for a retry, `PrepareRetry` (\"re-sign the request\") sets the current token, " +
			"and `Backoff` waits 0 after a 401, `DefaultBackoff` otherwise.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			tokens := newGuardedTokens(env)
			rc := retryablehttp.NewClient()
			rc.Logger = nil
			rc.HTTPClient = &http.Client{Transport: env.Transport}
			rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
				if err == nil && resp != nil && resp.StatusCode == http.StatusUnauthorized {
					if rerr := tokens.renew(ctx, usedAccess(resp.Request)); rerr != nil {
						return false, rerr
					}
					return true, nil
				}
				return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
			}
			rc.PrepareRetry = func(req *http.Request) error {
				req.Header = req.Header.Clone() // the copy retryablehttp makes shares the map
				req.Header.Set("Authorization", bearer(tokens.access()))
				return nil
			}
			rc.Backoff = func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
				if resp != nil && resp.StatusCode == http.StatusUnauthorized {
					return 0
				}
				return retryablehttp.DefaultBackoff(min, max, attempt, resp)
			}
			return &retryableClient{c: rc, tokens: tokens}, nil
		},
	}
}

type retryableClient struct {
	c      *retryablehttp.Client
	tokens *guardedTokens
}

func (r *retryableClient) Do(ctx context.Context, req Request) (int, error) {
	var body any
	if req.Body != nil {
		body = req.Body
	}
	rreq, err := retryablehttp.NewRequestWithContext(ctx, req.Method, req.URL, body)
	if err != nil {
		return 0, err
	}
	for k, v := range req.Header {
		rreq.Header[k] = v
	}
	if req.Body != nil {
		rreq.Header.Set("Content-Type", "application/json")
	}
	rreq.Header.Set("Authorization", bearer(r.tokens.access()))
	resp, err := r.c.Do(rreq)
	if err != nil {
		return 0, err
	}
	return drain(resp)
}

func (r *retryableClient) Close(context.Context) error { return nil }
