// Command member is a cluster member (see internal/clustertest) on a sqlitestore Coordinator: the
// SQLite file is named by CLUSTERTEST_STORE, and the lease lasts CLUSTERTEST_TTL. The tests of
// sqlitestore build it and run several at once on one file.
package main

import (
	"os"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/clustertest"
	"github.com/resilientclient/resilient/sqlitestore"
)

func main() {
	os.Exit(clustertest.Member(func(ttl time.Duration) (engine.Coordinator, func() error, error) {
		c, err := sqlitestore.OpenCoordinator(os.Getenv(clustertest.EnvStore), sqlitestore.WithLeaseTTL(ttl))
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}))
}
