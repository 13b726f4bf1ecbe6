package engine_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// One engine, many tenants: each family has its own tokens and its own token actor, started on
// first use from the FamilyStore (sqlitestore.Open gives one that outlives the process).
func ExampleEngine_Family() {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	store := &engine.MemoryFamilyStore{}
	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithFamilyStore(store),
	)
	if err != nil {
		panic(err)
	}
	defer closeQuietly(eng)

	for _, tenant := range []string{"acme", "globex"} {
		fam, err := eng.Family(tenant)
		if err != nil {
			panic(err)
		}
		// After the tenant connected: its pair is saved under its key.
		if err := fam.SetTokens(context.Background(), api.Login(tenant)); err != nil {
			panic(err)
		}
	}
	acme, _ := eng.Family("acme")
	me, err := engine.GetJSON[map[string]string](context.Background(), acme, "/me")
	fmt.Println(me["user"], err)
	// Output: acme <nil>
}

// Replicas sharing a family take turns through a Coordinator: here two engines in one process on a
// MemoryCoordinator; replicas in several processes use sqlitestore.OpenCoordinator (one host) or
// etcdstore.New (a cluster). Every request of both replicas meets a refused token, and the token
// endpoint sees one refresh.
func ExampleWithCluster() {
	api := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer api.Close()
	coord := &engine.MemoryCoordinator{}
	first := api.Login("ada")
	var replicas []*engine.Engine
	for i := range 2 {
		opts := []engine.Option{
			engine.WithBaseURL(api.URL()),
			engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
			engine.WithCluster(coord),
		}
		if i == 0 {
			opts = append(opts, engine.WithTokens(first)) // seeds the family if the store holds none
		}
		eng, err := engine.New(opts...)
		if err != nil {
			panic(err)
		}
		defer closeQuietly(eng)
		replicas = append(replicas, eng)
	}

	api.ExpireAccessTokens()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			_, _ = engine.GetJSON[map[string]string](context.Background(), replicas[i%2], "/me")
		})
	}
	wg.Wait()
	fmt.Println("refresh calls:", api.Stats().RefreshCalls, "reuse detected:", api.Stats().ReuseDetected)
	// Output: refresh calls: 1 reuse detected: 0
}
