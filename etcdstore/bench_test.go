package etcdstore_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/resilientclient/resilient/etcdstore"
)

// BenchmarkRefreshCycle: what the Coordinator adds to one refresh of a family, Lock, Load,
// Commit and Unlock against the embedded etcd on loopback (one member, so each write is one
// fsync of its WAL): one family at a time, and families in parallel, one per goroutine. The
// server runs in the test's process, so B/op and allocs/op count its work too.
func BenchmarkRefreshCycle(b *testing.B) {
	ctx := context.Background()
	cycle := func(b *testing.B, coord *etcdstore.Coordinator, family string) {
		unlock, err := coord.Lock(ctx, family)
		if err != nil {
			b.Fatal(err)
		}
		t, v, err := coord.Load(ctx, family)
		if err != nil {
			b.Fatal(err)
		}
		t.Access = "access-" + strconv.FormatUint(v, 10)
		if _, err := coord.Commit(ctx, family, v, t); err != nil {
			b.Fatal(err)
		}
		if err := unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("one family", func(b *testing.B) {
		coord := newCoordinator(b, newClient(b, etcdEndpoint))
		cycle(b, coord, "f") // the lease is granted outside the loop
		b.ReportAllocs()
		for b.Loop() {
			cycle(b, coord, "f")
		}
	})
	b.Run("parallel families", func(b *testing.B) {
		coord := newCoordinator(b, newClient(b, etcdEndpoint))
		cycle(b, coord, "warm-up")
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			family := "f" + strconv.FormatInt(next.Add(1), 10)
			for pb.Next() {
				cycle(b, coord, family)
			}
		})
	})
}
