package engine_test

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/oauth2"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// The examples below run against the project's fake API: api.URL() stands for your API, and
// api.OAuth2TokenURL() for your identity provider's token endpoint.

// closeQuietly closes an example's engine.
func closeQuietly(eng *engine.Engine) { _ = eng.Close(context.Background()) }

// You have an access token and a refresh token: the engine refreshes them (RFC 6749 §6) when they
// expire or are rejected, once however many requests are waiting.
func ExampleWithTokenEndpoint() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	tokens := api.Login("ada") // what your sign-in gave you

	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(tokens),
	)
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	me, err := engine.GetJSON[map[string]string](context.Background(), eng, "/me")
	fmt.Println(me["user"], err)
	// Output: ada <nil>
}

// You have a client ID and secret (service to service): the engine fetches a token with the
// client-credentials grant on first use and again when it expires or is rejected.
func ExampleWithClientCredentials() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	api.RegisterClient("billing", "billing-secret", fakeapi.ClientSecretBasic)

	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithClientCredentials(engine.ClientCredentials{
			TokenURL:     api.OAuth2TokenURL(),
			ClientID:     "billing",
			ClientSecret: "billing-secret",
			Scopes:       []string{"orders:read"},
		}),
	)
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	me, err := engine.GetJSON[map[string]string](context.Background(), eng, "/me")
	fmt.Println(me["user"], err)
	// Output: billing <nil>
}

// You have an x/oauth2 config and the token of its authorization-code flow: the engine refreshes
// through the config, and can force a refresh when the API rejects a token before its expiry.
func ExampleWithOAuth2Config() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	cfg := &oauth2.Config{
		ClientID: "web-app",
		Endpoint: oauth2.Endpoint{TokenURL: api.OAuth2TokenURL(), AuthStyle: oauth2.AuthStyleInParams},
	}
	t := api.Login("ada") // stands for cfg.Exchange(ctx, code)
	tok := &oauth2.Token{AccessToken: t.Access, RefreshToken: t.Refresh, Expiry: t.Expiry}

	eng, err := engine.New(engine.WithBaseURL(api.URL()), engine.WithOAuth2Config(cfg, tok))
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	api.ExpireAccessTokens() // the API rejects the token before its expiry
	me, err := engine.GetJSON[map[string]string](context.Background(), eng, "/me")
	fmt.Println(me["user"], err, api.Stats().RefreshCalls)
	// Output: ada <nil> 1
}

// You have an oauth2.TokenSource (a JWT-bearer flow, cloud credentials): the engine's token actor
// calls it, one call at a time, whenever it needs a token.
func ExampleWithTokenSource() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	t := api.Login("ada")
	var ts oauth2.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: t.Access}) // stands for yours

	eng, err := engine.New(engine.WithBaseURL(api.URL()), engine.WithTokenSource(ts))
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	me, err := engine.GetJSON[map[string]string](context.Background(), eng, "/me")
	fmt.Println(me["user"], err)
	// Output: ada <nil>
}

// Another SDK wants an oauth2.TokenSource: give it the engine's, and it shares the engine's token
// and its single refresh instead of refreshing (and replaying a rotated refresh token) on its own.
func ExampleEngine_TokenSource() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(api.Login("ada")),
	)
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	sdkClient := oauth2.NewClient(context.Background(), eng.TokenSource()) // or cloud SDK options
	resp, err := sdkClient.Get(api.URL() + "/me")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK {"user":"ada"}
}
