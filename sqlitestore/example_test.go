package sqlitestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
	"github.com/resilientclient/resilient/sqlitestore"
)

// The engine saves each rotated pair in the SQLite file before it uses it, so a restarted process
// (or another one on the same host) starts from the newest refresh token, not a spent one.
func ExampleOpen() {
	api := fakeapi.Start(fakeapi.Options{}) // an identity provider and an API on loopback
	defer api.Close()
	dir, err := os.MkdirTemp("", "sqlitestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tokens.db")

	store, err := sqlitestore.Open(path)
	if err != nil {
		panic(err)
	}
	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(api.Login("ada")),          // saved in the file only if it holds none yet
		engine.WithTokenStore(store.For("tenant-1")), // one family's row
	)
	if err != nil {
		panic(err)
	}
	api.ExpireAccessTokens() // the API now refuses the token: the engine refreshes and saves
	fmt.Println("before the restart:", get(eng, api.URL()+"/me"), "refreshes:", api.Stats().RefreshCalls)
	_ = eng.Close(context.Background())
	_ = store.Close()

	// The restart: no WithTokens, the file has the rotated pair.
	store, err = sqlitestore.Open(path)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	eng, err = engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokenStore(store.For("tenant-1")),
	)
	if err != nil {
		panic(err)
	}
	defer eng.Close(context.Background())
	fmt.Println("after the restart:", get(eng, api.URL()+"/me"), "refreshes:", api.Stats().RefreshCalls)
	// Output:
	// before the restart: 200 refreshes: 1
	// after the restart: 200 refreshes: 1
}

// get is the status of a GET through the engine's client.
func get(eng *engine.Engine, url string) int {
	resp, err := eng.Client().Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
