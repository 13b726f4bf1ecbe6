package subjects

import (
	"context"
	"net/http"

	"github.com/resilientclient/resilient/engine"
)

func engineSubject() Subject {
	return Subject{
		Name:      "engine",
		Setup:     "`engine.New` with the base URL, the RFC 6749 token endpoint, the starting tokens and the shared transport (`WithTransport`); every other option at its default; requests through `Client()`.",
		Refreshes: true,
		New:       func(env Env) (Client, error) { return newEngineClient(env) },
	}
}

func newEngineClient(env Env, opts ...engine.Option) (Client, error) {
	all := append([]engine.Option{
		engine.WithBaseURL(env.BaseURL),
		engine.WithTokenEndpoint(env.TokenURL, engine.OAuth2Refresh),
		engine.WithTokens(env.Tokens),
		engine.WithTransport(env.Transport),
	}, opts...)
	e, err := engine.New(all...)
	if err != nil {
		return nil, err
	}
	return &engineClient{e: e, c: e.Client()}, nil
}

type engineClient struct {
	e *engine.Engine
	c *http.Client
}

func (e *engineClient) Do(ctx context.Context, r Request) (int, error) { return send(ctx, e.c, r, "") }

func (e *engineClient) Close(ctx context.Context) error { return e.e.Close(ctx) }
