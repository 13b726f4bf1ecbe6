package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
)

// Every replica of a service makes one Coordinator on its etcd client and gives it to its
// engines. Here, by hand, the steps an engine takes for one refresh of a family: lock, load,
// refresh, commit at the version loaded, unlock. A commit at a version another replica has moved
// past fails with engine.ErrConflict, storing nothing.
func ExampleNew() {
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{etcdEndpoint}, // your etcd cluster; in production with TLS and auth
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()

	coord, err := etcdstore.New(client, etcdstore.WithPrefix("/example/"))
	if err != nil {
		panic(err)
	}
	defer coord.Close()
	// With the engine, every replica passes it to engine.New:
	//   eng, err := engine.New(engine.WithBaseURL(api), ..., engine.WithCluster(coord))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock, err := coord.Lock(ctx, "tenant-42")
	if err != nil {
		panic(err)
	}
	stored, version, err := coord.Load(ctx, "tenant-42")
	if err != nil {
		panic(err)
	}
	fmt.Println("stored before:", stored.Access != "", "version:", version)

	refreshed := engine.Tokens{Access: "access-1", Refresh: "refresh-1", Expiry: time.Now().Add(time.Hour)}
	newVersion, err := coord.Commit(ctx, "tenant-42", version, refreshed)
	if err != nil {
		panic(err)
	}
	if err := unlock(ctx); err != nil {
		panic(err)
	}

	// A replica that read the family before that commit cannot store its older pair over it.
	_, err = coord.Commit(ctx, "tenant-42", version, engine.Tokens{Access: "access-0", Refresh: "refresh-0"})
	fmt.Println("stale commit refused:", errors.Is(err, engine.ErrConflict))

	stored, now, _ := coord.Load(ctx, "tenant-42")
	fmt.Println("stored:", stored.Access, "at the committed version:", now == newVersion)
	// Output:
	// stored before: false version: 0
	// stale commit refused: true
	// stored: access-1 at the committed version: true
}
