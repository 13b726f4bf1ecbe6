package sqlitestore

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/clustertest"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// memberBin is the cluster member program (internal/member), built by TestMain without -race:
// the members are separate processes, and this one keeps the race detector on what it runs.
var memberBin string

// clusterTTL is the lease of the members' Coordinators in the real-process tests: short, so that
// a killed holder's lock ends within a second or so.
const clusterTTL = time.Second

// clusterSuite is clustertest's suite of scenarios on member processes sharing a fresh SQLite file
// per test, its first pair committed by a Coordinator of this process.
func clusterSuite() clustertest.Suite {
	return clustertest.Suite{
		Bin: memberBin,
		TTL: clusterTTL,
		Store: func(t testing.TB) ([]string, func(string, engine.Tokens)) {
			path := filepath.Join(t.TempDir(), "cluster.db")
			seed := func(family string, tok engine.Tokens) {
				c, err := OpenCoordinator(path, WithLeaseTTL(clusterTTL))
				require.NoError(t, err)
				defer func() { assert.NoError(t, c.Close()) }()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err = c.Commit(ctx, family, 0, tok)
				require.NoError(t, err)
			}
			return []string{clustertest.EnvStore + "=" + path}, seed
		},
	}
}

// Every scenario of cluster mode with real processes: one refresh per expiry, a member SIGKILLed
// while refreshing and while holding the lock after the server rotated, a member cut off from the
// file, and Close of one member.
func TestCluster(t *testing.T) {
	clusterSuite().Run(t)
}

// cutAfterFirstLoad is a Coordinator cut off from its file after its first Load, as by a network
// partition: every later Load waits until its context ends, and fails.
type cutAfterFirstLoad struct {
	engine.Coordinator
	loads atomic.Int32
}

func (c *cutAfterFirstLoad) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	if c.loads.Add(1) > 1 {
		<-ctx.Done()
		return engine.Tokens{}, 0, context.Cause(ctx)
	}
	return c.Coordinator.Load(ctx, family)
}

// A replica cut off from the file just after New read its pair still serves its valid token: its
// token actor starts from what New read, rather than reading again (it did, once, after New had
// returned, and a cut at that moment left it without credentials for good; clustertest's CutOff
// met that only now and then).
func TestClusterReplicaCutOffRightAfterStart(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	c := openCoordinator(t, "")
	ctx := testContext(t)
	_, err := c.Commit(ctx, "", 0, srv.Login("ann"))
	require.NoError(t, err)
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithCluster(&cutAfterFirstLoad{Coordinator: c}), engine.WithRefreshTimeout(time.Second))
	require.NoError(t, err)
	defer func() { assert.NoError(t, e.Close(ctx)) }()
	got, err := engine.GetJSON[map[string]string](ctx, e, "/me")
	require.NoError(t, err, "a valid token needs no coordinator")
	assert.Equal(t, "ann", got["user"])
}

// BenchmarkW6ClusterStorm is the W6 storm (see clustertest.Suite.Storm) on three member processes
// sharing a SQLite file, beside one engine alone. Run it with -benchtime=1x.
func BenchmarkW6ClusterStorm(b *testing.B) {
	clusterSuite().Storm(b, 1000)
}
