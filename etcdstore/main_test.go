package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/resilientclient/resilient/etcdstore"
	"github.com/resilientclient/resilient/internal/clustertest"
)

// etcdEndpoint is the client address of the etcd that TestMain starts and every test shares; the
// tests that stop their server start one of their own.
var etcdEndpoint string

func TestMain(m *testing.M) {
	// Nothing is ignored: the embedded server is stopped inside Run, before goleak looks, and its
	// goroutines (and every client's) end within goleak's retries. Each test closes its clients.
	goleak.VerifyTestMain(withEtcd{m})
}

// withEtcd runs the tests with an embedded etcd started before and stopped after them, and builds
// the cluster member program (cluster_test.go) once for them.
type withEtcd struct{ m *testing.M }

func (w withEtcd) Run() int {
	e, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start etcd:", err)
		return 1
	}
	defer stopEtcd(e)
	etcdEndpoint = e.Clients[0].Addr().String()

	dir, err := os.MkdirTemp("", "etcdstore-member-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "member dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if memberBin, err = clustertest.Build(".", "./internal/member", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return w.m.Run()
}

// startEtcd starts a one-member etcd on loopback, in a temporary directory, logging nothing, and
// waits (at most 30 s) until it serves.
func startEtcd() (*embed.Etcd, error) {
	dir, err := os.MkdirTemp("", "etcdstore-test-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := url.URL{Scheme: "http", Host: ports[0]}
	peer := url.URL{Scheme: "http", Host: ports[1]}

	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		stopEtcd(e)
		return nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(30 * time.Second):
		stopEtcd(e)
		return nil, errors.New("etcd not ready within 30s")
	}
}

// stopEtcd stops e and removes its data.
func stopEtcd(e *embed.Etcd) {
	e.Close()
	os.RemoveAll(e.Config().Dir)
}

// freePorts finds n free loopback ports (embed refuses port 0): each is listened on, then closed.
func freePorts(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// newClient returns a client of the etcd at endpoint, closed when the test ends.
func newClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// newCoordinator returns a Coordinator on client under a prefix of the test's own, closed when the
// test ends (before the client, since cleanups run last first).
func newCoordinator(t testing.TB, client *clientv3.Client, opts ...etcdstore.Option) *etcdstore.Coordinator {
	t.Helper()
	c, err := etcdstore.New(client, append([]etcdstore.Option{etcdstore.WithPrefix(testPrefix(t))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix is a key prefix only this test uses, so tests sharing the etcd never see each other.
func testPrefix(t testing.TB) string {
	// A number per test run too: with -count above 1 every run must start on keys of its own, since
	// the embedded etcd lives for the whole test binary. Within one run the prefix stays the same.
	p, _ := prefixes.LoadOrStore(t, "/test/"+strconv.FormatInt(runs.Add(1), 10)+"/"+strings.ReplaceAll(t.Name(), "/", "_")+"/")
	return p.(string)
}

var (
	prefixes sync.Map     // testing.TB → its prefix
	runs     atomic.Int64 // numbers the prefixes
)

// bounded returns a context that ends after d, cancelled when the test ends.
func bounded(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
