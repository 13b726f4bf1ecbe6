package subjects

import (
	"context"
	"net/http"

	"golang.org/x/oauth2"
)

func oauth2Subject() Subject {
	return Subject{
		Name: "oauth2",
		Setup: "`golang.org/x/oauth2`: `Config.Client` (a `Transport` over a `ReuseTokenSource`), the shared transport given through the `oauth2.HTTPClient` context value, as its docs say. " +
			"It refreshes when the token's expiry (known from `expires_in` or given) is near, under a mutex; it does not refresh on a 401 and does not retry.",
		Refreshes: true,
		New: func(env Env) (Client, error) {
			conf := &oauth2.Config{
				ClientID: "bench",
				Endpoint: oauth2.Endpoint{TokenURL: env.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
			}
			// No Timeout on this client: oauth2.NewClient copies it to the client it returns, and
			// an http.Client Timeout costs every request a timer.
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: env.Transport})
			tok := &oauth2.Token{AccessToken: env.Tokens.Access, RefreshToken: env.Tokens.Refresh, Expiry: env.Tokens.Expiry, TokenType: "Bearer"}
			return &oauth2Client{c: conf.Client(ctx, tok)}, nil
		},
	}
}

type oauth2Client struct{ c *http.Client }

func (o *oauth2Client) Do(ctx context.Context, r Request) (int, error) { return send(ctx, o.c, r, "") }

func (o *oauth2Client) Close(context.Context) error { return nil }
