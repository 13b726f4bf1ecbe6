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

// Replicas of a service (two engines here, each with its own Coordinator as each process would
// have; processes in production) share a family through one SQLite file in cluster mode: when the
// access token expires, one replica refreshes under the family's lock, and the other finds the
// new pair in the file instead of spending the refresh token a second time.
func ExampleOpenCoordinator() {
	api := fakeapi.Start(fakeapi.Options{Opaque: true}) // an identity provider and an API on loopback
	defer api.Close()
	dir, err := os.MkdirTemp("", "sqlitestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "cluster.db")
	first := api.Login("ada")

	var replicas []*engine.Engine
	for range 2 {
		coord, err := sqlitestore.OpenCoordinator(path) // one per process
		if err != nil {
			panic(err)
		}
		defer coord.Close()
		eng, err := engine.New(
			engine.WithBaseURL(api.URL()),
			engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
			engine.WithTokens(first), // stored only if the file holds no pair yet
			engine.WithCluster(coord),
		)
		if err != nil {
			panic(err)
		}
		defer eng.Close(context.Background())
		replicas = append(replicas, eng)
	}
	api.ExpireAccessTokens() // the API now refuses the token: each replica meets a 401
	for i, eng := range replicas {
		fmt.Println("replica", i, "GET /me:", get(eng, api.URL()+"/me"))
	}
	fmt.Println("refreshes:", api.Stats().RefreshCalls, "reuse detected:", api.Stats().ReuseDetected)
	// Output:
	// replica 0 GET /me: 200
	// replica 1 GET /me: 200
	// refreshes: 1 reuse detected: 0
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
