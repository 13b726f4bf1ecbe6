package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Suite is what every coordinator must pass, with its replicas as real OS processes on the fake
// API (rotating refresh tokens, reuse detection). Each store's module runs it with its own member
// binary and store.
type Suite struct {
	Bin string        // the member binary (Build)
	TTL time.Duration // the lease time to live the members' coordinators use
	// Store makes a fresh store for one test: the member environment that names it (EnvStore=…)
	// and a function that commits a family's first pair in it.
	Store func(t testing.TB) (env []string, seed func(family string, tok engine.Tokens))
}

// start runs n members on srv sharing a fresh store whose default family holds first.
func (s Suite) start(t testing.TB, srv *fakeapi.Server, n int, first engine.Tokens, env ...string) []*Process {
	t.Helper()
	storeEnv, seed := s.Store(t)
	seed("", first)
	env = append(append([]string{EnvAPI + "=" + srv.URL(), EnvTokenURL + "=" + srv.OAuth2TokenURL(), EnvTTL + "=" + s.TTL.String()}, storeEnv...), env...)
	ms := make([]*Process, n)
	for i := range ms {
		p, err := Start(s.Bin, env...)
		require.NoError(t, err)
		t.Cleanup(p.Kill)
		ms[i] = p
	}
	return ms
}

// all sends command to every member at once and collects their replies.
func all(t testing.TB, ms []*Process, command string, timeout time.Duration) []Reply {
	t.Helper()
	for _, m := range ms {
		require.NoError(t, m.Send(command))
	}
	out := make([]Reply, len(ms))
	for i, m := range ms {
		r, err := m.Wait(timeout)
		require.NoError(t, err, "member %d", i)
		require.Empty(t, r.Err, "member %d", i)
		out[i] = r
	}
	return out
}

// closeAll closes every member and checks that each left no goroutine behind.
func closeAll(t testing.TB, ms []*Process) {
	t.Helper()
	for i, m := range ms {
		r, err := m.Close(30 * time.Second)
		assert.NoError(t, err, "member %d", i)
		assert.True(t, r.Closed, "member %d", i)
		assert.Empty(t, r.Leaks, "member %d: goroutines left after Close", i)
	}
}

// eventually polls cond every 5 ms for up to d.
func eventually(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("clustertest: %s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run runs every scenario as a subtest, so that each store's TestCluster runs the same list and a
// new scenario reaches every store.
func (s Suite) Run(t *testing.T) {
	t.Run("RefreshOncePerExpiry", s.RefreshOncePerExpiry)
	t.Run("KillRefreshingReplica", s.KillRefreshingReplica)
	t.Run("KillLockHolderAfterRotation", s.KillLockHolderAfterRotation)
	t.Run("CutOff", s.CutOff)
	t.Run("CloseOneMember", s.CloseOneMember)
}

// RefreshOncePerExpiry: 3 members, each with 300 concurrent requests, across 3 expiries of the
// access token: exactly 3 refresh calls, 0 reuse, every request answered 200. Once with a known
// expiry, once with opaque tokens (the 401 storm on every member at once: one refresh).
func (s Suite) RefreshOncePerExpiry(t *testing.T) {
	for _, opaque := range []bool{false, true} {
		name := map[bool]string{false: "known expiry", true: "opaque tokens, 401 storm"}[opaque]
		t.Run(name, func(t *testing.T) {
			srv := fakeapi.Start(fakeapi.Options{Opaque: opaque})
			defer srv.Close()
			ms := s.start(t, srv, 3, srv.Login("ann"))
			for round := 1; round <= 3; round++ {
				srv.ExpireAccessTokens()
				for i, r := range all(t, ms, "get 300 20000", time.Minute) {
					assert.Equal(t, 300, r.OK, "round %d, member %d: %v", round, i, r.Failed)
				}
				assert.Equal(t, int64(round), srv.Stats().RefreshCalls, "round %d: one refresh per expiry for all members", round)
			}
			st := srv.Stats()
			assert.Zero(t, st.ReuseDetected)
			assert.Zero(t, st.Revocations)
			closeAll(t, ms)
		})
	}
}

// KillRefreshingReplica: the member whose refresh call is in flight (the token endpoint takes 500
// ms) is SIGKILLed. The survivors' requests end with 200 or a typed error within their deadline;
// after the lease ran out, every request is answered 200, with no reuse.
func (s Suite) KillRefreshingReplica(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	ms := s.start(t, srv, 3, srv.Login("ann"))
	srv.SetTokenDelay(500 * time.Millisecond)
	srv.ExpireAccessTokens()
	require.NoError(t, ms[0].Send("get 20 10000"))
	eventually(t, 10*time.Second, func() bool { return srv.Stats().RefreshCalls >= 1 }, "member 0 calls the token endpoint")
	ms[0].Kill()
	killed := time.Now()
	for i, r := range all(t, ms[1:], "get 200 5000", time.Minute) {
		assert.Equal(t, 200, r.OK+r.Failed["refresh_failed"]+r.Failed["cluster_unavailable"]+r.Failed["deadline"],
			"member %d: every request answered 200 or failed with a typed error: %v", i+1, r.Failed)
	}
	recovered := time.Since(killed)
	eventually(t, s.TTL+10*time.Second, func() bool {
		rs := all(t, ms[1:], "get 20 5000", time.Minute)
		return rs[0].OK == 20 && rs[1].OK == 20
	}, "the survivors serve every request")
	t.Logf("survivors answered within %v of the kill; lease TTL %v", recovered.Round(time.Millisecond), s.TTL)
	for i, r := range all(t, ms[1:], "get 100 5000", time.Minute) {
		assert.Equal(t, 100, r.OK, "member %d after recovery: %v", i+1, r.Failed)
	}
	assert.Zero(t, srv.Stats().ReuseDetected)
	closeAll(t, ms[1:])
}

// KillLockHolderAfterRotation: the token endpoint rotates the refresh token, then takes 500 ms to
// answer, and the member waiting for that answer (holding the family's lock) is SIGKILLed: the new
// pair is lost with it. Another member takes the lock once the lease ends, reads the store (the old
// pair) and refreshes with the spent token. With the server's reuse grace it gets the same new pair
// (0 revocations, every request then 200); without, the session ends, once, with SessionExpired on
// every member and no further refresh call.
func (s Suite) KillLockHolderAfterRotation(t *testing.T) {
	for _, grace := range []bool{true, false} {
		name := map[bool]string{true: "with reuse grace", false: "without reuse grace"}[grace]
		t.Run(name, func(t *testing.T) {
			opts := fakeapi.Options{Opaque: true}
			if grace {
				opts.ReuseGrace = time.Minute
			}
			srv := fakeapi.Start(opts)
			defer srv.Close()
			ms := s.start(t, srv, 3, srv.Login("ann"))
			srv.SetTokenAnswerDelay(500 * time.Millisecond)
			srv.ExpireAccessTokens()
			require.NoError(t, ms[0].Send("get 20 10000"))
			eventually(t, 10*time.Second, func() bool { return srv.Stats().RefreshCalls >= 1 }, "member 0 calls the token endpoint")
			time.Sleep(100 * time.Millisecond) // rotated at the server; the answer is still 400 ms away
			ms[0].Kill()
			killed := time.Now()
			srv.SetTokenAnswerDelay(0)
			wait := fmt.Sprintf("get 50 %d", (s.TTL + 10*time.Second).Milliseconds())
			rs := all(t, ms[1:], wait, time.Minute)
			took := time.Since(killed)
			st := srv.Stats()
			if grace {
				for i, r := range rs {
					assert.Equal(t, 50, r.OK, "member %d: %v", i+1, r.Failed)
				}
				assert.Zero(t, st.Revocations, "the grace period covers the lost answer")
				assert.Equal(t, int64(1), st.GraceReplays, "one replay of the spent refresh token, by the next lock holder")
				t.Logf("from SIGKILL to every survivor's last reply: %v (lease TTL %v)", took.Round(time.Millisecond), s.TTL)
			} else {
				for i, r := range rs {
					assert.Equal(t, 50, r.Failed["session_expired"], "member %d: %v", i+1, r.Failed)
				}
				assert.LessOrEqual(t, st.RefreshCalls, int64(2), "no loop: one replay, then the store says the session ended")
				rs = all(t, ms[1:], "get 10 5000", time.Minute)
				for i, r := range rs {
					assert.Equal(t, 10, r.Failed["session_expired"], "member %d keeps failing fast", i+1)
				}
				assert.LessOrEqual(t, srv.Stats().RefreshCalls, int64(2))
			}
			closeAll(t, ms[1:])
		})
	}
}

// CutOff: a member cut off from the store does not refresh on its own. It serves its valid token,
// then fails its requests with ErrRefreshFailed wrapping ErrClusterUnavailable (kind
// "cluster_unavailable") while it cannot reach the store, and recovers without a restart, with the
// pair another member refreshed meanwhile.
func (s Suite) CutOff(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	ms := s.start(t, srv, 2, srv.Login("ann"), EnvRefresh+"=1s")
	_, err := ms[1].Do("cut", 10*time.Second)
	require.NoError(t, err)
	r, err := ms[1].Do("get 10 5000", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 10, r.OK, "a valid token needs no store: %v", r.Failed)

	srv.ExpireAccessTokens()
	r, err = ms[1].Do("get 10 5000", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 10, r.Failed["cluster_unavailable"], "typed failures while cut off: %v", r.Failed)
	assert.Zero(t, srv.Stats().RefreshCalls, "a member that cannot lock does not refresh")

	r, err = ms[0].Do("get 10 5000", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 10, r.OK, "the other member refreshes: %v", r.Failed)

	_, err = ms[1].Do("heal", 10*time.Second)
	require.NoError(t, err)
	r, err = ms[1].Do("get 10 5000", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 10, r.OK, "back without a restart, with the other member's pair: %v", r.Failed)
	st := srv.Stats()
	assert.Equal(t, int64(1), st.RefreshCalls)
	assert.Zero(t, st.ReuseDetected)
	closeAll(t, ms)
}

// CloseOneMember: Close of one member leaves the others working across an expiry; every member
// exits without a goroutine left.
func (s Suite) CloseOneMember(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	ms := s.start(t, srv, 3, srv.Login("ann"))
	closeAll(t, ms[:1])
	srv.ExpireAccessTokens()
	for i, r := range all(t, ms[1:], "get 100 10000", time.Minute) {
		assert.Equal(t, 100, r.OK, "member %d: %v", i+1, r.Failed)
	}
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
	closeAll(t, ms[1:])
}

// Storm is the W6 benchmark: 3 member processes × parked requests on one expired token (the token
// endpoint holds its call until released), then released: the time from the release of the refresh
// answer to the last reply on every member, and the refresh calls (1 expected). In the same run, two
// baselines without cluster mode: one engine with parked requests (the comparison), and one
// engine with all 3 × parked (the same work: on a machine with few cores, most of the cluster's time
// is the resends of three times as many requests, not the coordination).
func (s Suite) Storm(b *testing.B, parked int) {
	for b.Loop() {
		cluster, calls := s.stormCluster(b, parked)
		alone := stormAlone(b, parked)
		same := stormAlone(b, 3*parked)
		b.ReportMetric(float64(cluster.Microseconds())/1000, "cluster-ms")
		b.ReportMetric(float64(alone.Microseconds())/1000, "alone-ms")
		b.ReportMetric(float64(same.Microseconds())/1000, "alone-3x-ms")
		b.ReportMetric(float64(cluster)/float64(alone), "cluster/alone")
		b.ReportMetric(float64(cluster)/float64(same), "cluster/alone-3x")
		b.ReportMetric(float64(calls), "refreshes")
	}
}

func (s Suite) stormCluster(b *testing.B, parked int) (time.Duration, int64) {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	ms := s.start(b, srv, 3, srv.Login("ann"))
	defer closeAll(b, ms)
	release := srv.HoldTokenCalls()
	srv.ExpireAccessTokens()
	for _, m := range ms {
		require.NoError(b, m.Send(fmt.Sprintf("get %d 60000", parked)))
	}
	eventually(b, 30*time.Second, func() bool { return srv.Stats().RefreshCalls == 1 }, "one refresh held")
	time.Sleep(500 * time.Millisecond) // every request reaches its park (or the lock queue)
	released := time.Now()
	release()
	var last int64
	for i, m := range ms {
		r, err := m.Wait(time.Minute)
		require.NoError(b, err)
		require.Equal(b, parked, r.OK, "member %d: %v", i, r.Failed)
		last = max(last, r.Last)
	}
	return time.Unix(0, last).Sub(released), srv.Stats().RefreshCalls
}

// stormAlone is the same storm on one engine in this process, without cluster mode.
func stormAlone(b *testing.B, parked int) time.Duration {
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(srv.Login("ann")))
	require.NoError(b, err)
	defer func() { _ = e.Close(context.Background()) }()
	release := srv.HoldTokenCalls()
	srv.ExpireAccessTokens()
	done := make(chan Reply, 1)
	go func() { done <- get(e, parked, time.Minute, "") }()
	eventually(b, 30*time.Second, func() bool { return srv.Stats().RefreshCalls == 1 }, "one refresh held")
	time.Sleep(500 * time.Millisecond)
	released := time.Now()
	release()
	r := <-done
	require.Equal(b, parked, r.OK, "%v", r.Failed)
	return time.Unix(0, r.Last).Sub(released)
}
