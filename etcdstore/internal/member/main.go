// Command member is a cluster member (see internal/clustertest) on an etcdstore Coordinator. It
// connects to the etcd endpoints listed, comma-separated, in CLUSTERTEST_STORE; its locks are held
// on a lease of CLUSTERTEST_TTL; and its keys live under ETCDSTORE_PREFIX (default: the package's
// DefaultPrefix), a variable of this program only, so that each test of etcdstore has keys of its
// own in the one etcd they share. The tests build it once and run several at a time.
package main

import (
	"errors"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
	"github.com/resilientclient/resilient/internal/clustertest"
)

// EnvPrefix names the key prefix of the member's Coordinator (etcdstore.WithPrefix).
const EnvPrefix = "ETCDSTORE_PREFIX"

func main() {
	os.Exit(clustertest.Member(open))
}

// open connects to etcd and returns a Coordinator on it, and the function that closes the
// Coordinator (revoking its lease) and then the client.
func open(ttl time.Duration) (engine.Coordinator, func() error, error) {
	endpoints := strings.Split(os.Getenv(clustertest.EnvStore), ",")
	if len(endpoints) == 0 || endpoints[0] == "" {
		return nil, nil, errors.New("member: " + clustertest.EnvStore + " names no etcd endpoint")
	}
	// The client's warnings go to stderr, which the harness shows when a member fails; stdout is
	// the protocol's.
	logCfg := zap.NewProductionConfig()
	logCfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	logger, err := logCfg.Build()
	if err != nil {
		return nil, nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      logger,
	})
	if err != nil {
		return nil, nil, err
	}
	opts := []etcdstore.Option{etcdstore.WithTTL(ttl)}
	if p := os.Getenv(EnvPrefix); p != "" {
		opts = append(opts, etcdstore.WithPrefix(p))
	}
	coord, err := etcdstore.New(client, opts...)
	if err != nil {
		return nil, nil, errors.Join(err, client.Close())
	}
	return coord, func() error { return errors.Join(coord.Close(), client.Close()) }, nil
}
