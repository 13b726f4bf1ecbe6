package workload

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// available is every subject that can be built today.
func available(t *testing.T) []subjects.Subject {
	var out []subjects.Subject
	for _, s := range subjects.All() {
		if s.New != nil {
			out = append(out, s)
		}
	}
	require.NotEmpty(t, out)
	return out
}

func named(t *testing.T, name string) subjects.Subject {
	ss, err := subjects.Named(name)
	require.NoError(t, err)
	return ss[0]
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestHotPathEverySubject(t *testing.T) {
	ss := available(t)
	res, errs := HotPath(ctx(t), ctx(t), ss, subjects.Raw, 20*time.Millisecond, 4)
	require.Empty(t, errs)
	assert.Zero(t, res[subjects.Raw].AddedNsPerOp)
	assert.NotZero(t, res["engine"].AddedNsPerOp)
	for _, s := range ss {
		r := res[s.Name]
		assert.Positive(t, r.NsPerOp, s.Name)
		assert.Positive(t, r.AllocsPerOp, s.Name)
		assert.GreaterOrEqual(t, r.Ops, 40, s.Name)
	}
}

func TestThroughputEverySubject(t *testing.T) {
	for _, s := range available(t) {
		r, err := Throughput(ctx(t), s, 16, 4, 20*time.Millisecond, 60*time.Millisecond, true)
		require.NoError(t, err, s.Name)
		assert.Positive(t, r.OK, s.Name)
		assert.Zero(t, r.Failed, s.Name)
		assert.InDelta(t, float64(r.OK)/0.06, r.ReqPerSec, 1, s.Name)
		assert.LessOrEqual(t, r.P50, r.P99, s.Name)
	}
}

// The engine refreshes exactly once in either storm, and everything it parked succeeds; the naive
// client, refreshing once per 401, is caught replaying a refresh token.
func TestStormMeasuresRefreshes(t *testing.T) {
	for _, mode := range []Expiry{KnownExpiry, Unknown401} {
		r, err := Storm(ctx(t), named(t, "engine"), 200, mode, 5*time.Millisecond)
		require.NoError(t, err)
		assert.Equal(t, int64(1), r.RefreshCalls, mode.String())
		assert.Equal(t, int64(200), r.OK, mode.String())
		assert.Positive(t, r.Release, mode.String())
		assert.Positive(t, r.HeapPerParked, mode.String())
		if mode == KnownExpiry {
			assert.Zero(t, r.Unauthorized, "parked before sending")
		} else {
			assert.Positive(t, r.Unauthorized, "the engine learnt of the expiry from a 401")
		}
	}
	r, err := Storm(ctx(t), named(t, "naive"), 50, Unknown401, 5*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, int64(50), r.RefreshCalls, "one refresh per 401")
	assert.Positive(t, r.ReuseDetected)
	assert.Positive(t, r.Failed)
	assert.Zero(t, r.Release, "a release that failed requests is not reported")
}

// At the size, outside -short: 10,000 requests, one refresh, all answered.
func TestStormAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 parked requests")
	}
	for _, mode := range []Expiry{KnownExpiry, Unknown401} {
		r, err := Storm(ctx(t), named(t, "engine"), 10_000, mode, 20*time.Millisecond)
		require.NoError(t, err)
		assert.Equal(t, int64(1), r.RefreshCalls, mode.String())
		assert.Equal(t, int64(10_000), r.OK, mode.String())
		assert.Positive(t, r.Parked, mode.String())
	}
}

func TestStormEverySubject(t *testing.T) {
	for _, s := range available(t) {
		if !s.Refreshes {
			continue
		}
		for _, mode := range []Expiry{KnownExpiry, Unknown401} {
			r, err := Storm(ctx(t), s, 40, mode, time.Millisecond)
			require.NoError(t, err, s.Name)
			assert.Equal(t, int64(40), r.OK+r.Failed, s.Name)
			t.Logf("%-14s %-12s ok %3d refreshes %3d reuse %d 401s %3d heap/parked %6.0f B release %v", s.Name, mode, r.OK, r.RefreshCalls, r.ReuseDetected, r.Unauthorized, r.HeapPerParked, r.Release)
		}
	}
}

func TestBroadcast(t *testing.T) {
	r, err := Broadcast(ctx(t), 300)
	require.NoError(t, err)
	assert.Equal(t, int64(300), r.OK)
	assert.Positive(t, r.Wake)
	assert.Greater(t, r.WakeSend, r.Wake/10)
	assert.Positive(t, r.HeapPerParked, "each parked goroutine holds its request")
}

// Amplification is attempts ÷ logical requests, both counted for the requests started during the
// outage: raw never retries, so it is exactly 1; the engine retries some.
func TestOutageCountsAttempts(t *testing.T) {
	r, err := Outage(ctx(t), named(t, subjects.Raw), 16, 8, 150*time.Millisecond, 10*time.Millisecond, 5*time.Second)
	require.NoError(t, err)
	assert.Positive(t, r.Logical)
	assert.Equal(t, r.Logical, r.Attempts)
	// A request started just before the end may reach the server just after it.
	assert.GreaterOrEqual(t, r.Failed, r.Logical-8)
	assert.InDelta(t, 1.0, r.Amplification, 1e-9)
	assert.Equal(t, 8, r.Recovered)
	assert.Less(t, r.Recovery, time.Second)

	r, err = Outage(ctx(t), named(t, "engine"), 16, 8, 150*time.Millisecond, 10*time.Millisecond, 5*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, r.Attempts, r.Logical)
	assert.InDelta(t, float64(r.Attempts)/float64(r.Logical), r.Amplification, 1e-9)
	assert.Equal(t, 8, r.Recovered)
}

func TestOutageEverySubject(t *testing.T) {
	for _, s := range available(t) {
		r, err := Outage(ctx(t), s, 16, 4, 100*time.Millisecond, 10*time.Millisecond, 10*time.Second)
		require.NoError(t, err, s.Name)
		assert.Positive(t, r.Logical, s.Name)
		t.Logf("%-14s logical %3d attempts %3d amp %.2f failed %3d recovery %v (%d)", s.Name, r.Logical, r.Attempts, r.Amplification, r.Failed, r.Recovery, r.Recovered)
	}
}

// With every answer lost after the work is done, a client that resends a POST without a key
// creates duplicates; the fake API counts them.
func TestFlakyCountsDuplicates(t *testing.T) {
	r, err := Flaky(ctx(t), named(t, "resty"), 8, 2, 300, 100*time.Millisecond, fakeapi.Flakiness{Reset: 0.3}, 1)
	require.NoError(t, err)
	assert.Equal(t, int64(30), r.Logical)
	assert.Equal(t, r.Logical, r.Posts)
	assert.Positive(t, r.Duplicates, "resty resends a POST after a reset")

	r, err = Flaky(ctx(t), named(t, "engine"), 8, 2, 300, 100*time.Millisecond, fakeapi.Flakiness{Reset: 0.3}, 1)
	require.NoError(t, err)
	assert.Zero(t, r.Duplicates, "the engine's Idempotency-Key makes the server replay")
	assert.Positive(t, r.OK)
}

func TestFlakyEverySubject(t *testing.T) {
	for _, s := range available(t) {
		r, err := Flaky(ctx(t), s, 16, 4, 1000, 200*time.Millisecond, fakeapi.Flakiness{Unavailable: 0.05, Reset: 0.01}, 5)
		require.NoError(t, err, s.Name)
		assert.Equal(t, int64(200), r.Logical, s.Name)
		assert.Equal(t, int64(40), r.Posts, s.Name)
		assert.Positive(t, r.OK, s.Name)
		assert.LessOrEqual(t, r.OK, r.Logical, s.Name)
		assert.InDelta(t, float64(r.OK)/0.2, r.Goodput, 1e-6, s.Name)
		t.Logf("%-14s logical %4d ok %4d goodput %6.0f/s dup %d attempts %d p99 %v", s.Name, r.Logical, r.OK, r.Goodput, r.Duplicates, r.Attempts, r.P99)
	}
}

func TestInMemoryTurnsAbortIntoError(t *testing.T) {
	m := &InMemory{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })}
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	_, err := m.RoundTrip(req)
	assert.ErrorIs(t, err, ErrConnectionLost)
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	assert.Equal(t, time.Duration(5), Quantile(ds, 0.5))
	assert.Equal(t, time.Duration(10), Quantile(ds, 0.99))
	assert.Equal(t, time.Duration(1), Quantile(ds, 0))
	assert.Zero(t, Quantile(nil, 0.5))
}
