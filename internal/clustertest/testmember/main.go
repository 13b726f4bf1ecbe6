// Command testmember is a cluster member on a MemoryCoordinator of its own: it shares nothing with
// other processes, and serves to test the member protocol itself.
package main

import (
	"os"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/clustertest"
)

func main() {
	os.Exit(clustertest.Member(func(time.Duration) (engine.Coordinator, func() error, error) {
		return &engine.MemoryCoordinator{}, func() error { return nil }, nil
	}))
}
