package subjects

import (
	"context"
	"net/http"
)

func rawSubject() Subject {
	return Subject{
		Name:  Raw,
		Setup: "net/http `http.Client` on the shared transport; the starting access token set by hand on every request; no refresh, no retry.",
		New: func(env Env) (Client, error) {
			return &rawClient{c: &http.Client{Transport: env.Transport}, auth: bearer(env.Tokens.Access)}, nil
		},
	}
}

type rawClient struct {
	c    *http.Client
	auth string
}

func (r *rawClient) Do(ctx context.Context, req Request) (int, error) {
	return send(ctx, r.c, req, r.auth)
}

func (r *rawClient) Close(context.Context) error { return nil }
