package subjects

import (
	"context"
	"net/http"

	"github.com/go-resty/resty/v2"
)

func restySubject() Subject {
	return Subject{
		Name: "resty",
		Setup: "`github.com/go-resty/resty/v2` on the shared transport (`NewWithClient`), `SetRetryCount(3)` with its default 100 ms–2 s jittered backoff, " +
			"a retry condition for errors, 401, 429 and 5xx (its README's pattern), logger silenced. Refresh through its hooks: `AddRetryHook` refreshes after a 401 " +
			"(mutex; skipped when the token was already replaced), `OnBeforeRequest` sets the current token on every attempt.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			tokens := newGuardedTokens(env)
			c := resty.NewWithClient(&http.Client{Transport: env.Transport})
			c.SetLogger(quietLogger{})
			c.SetRetryCount(3)
			c.AddRetryCondition(func(r *resty.Response, err error) bool {
				if err != nil {
					return true
				}
				s := r.StatusCode()
				return s == http.StatusUnauthorized || s == http.StatusTooManyRequests || s >= 500
			})
			c.AddRetryHook(func(r *resty.Response, err error) {
				if err == nil && r != nil && r.StatusCode() == http.StatusUnauthorized && r.RawResponse != nil {
					_ = tokens.renew(r.Request.Context(), usedAccess(r.RawResponse.Request))
				}
			})
			c.OnBeforeRequest(func(_ *resty.Client, r *resty.Request) error {
				r.SetAuthToken(tokens.access())
				return nil
			})
			return &restyClient{c: c}, nil
		},
	}
}

type restyClient struct{ c *resty.Client }

func (r *restyClient) Do(ctx context.Context, req Request) (int, error) {
	rr := r.c.R().SetContext(ctx)
	for k, v := range req.Header {
		for _, s := range v {
			rr.Header.Add(k, s)
		}
	}
	if req.Body != nil {
		rr.SetHeader("Content-Type", "application/json").SetBody(req.Body)
	}
	resp, err := rr.Execute(req.Method, req.URL)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil // resty has read and closed the body
}

func (r *restyClient) Close(context.Context) error { return nil }

// quietLogger drops resty's log lines (a warning per failed attempt).
type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
