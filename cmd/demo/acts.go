package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// herdAct: the token expires under a herd of concurrent requests.
func herdAct(r *reporter, n int) {
	r.begin(1, fmt.Sprintf("the token expires under %d concurrent requests", n))
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	srv.SetTokenDelay(20 * time.Millisecond) // a token endpoint of realistic speed
	srv.ExpireAccessTokens()                 // only the server knows: requests will meet a 401
	res := fire(r, e, n, "expired token")
	st := srv.Stats()
	fresh := fire(r, e, n, "fresh token") // the same herd once the token is good: what p50 compares to
	report(r, res, st, events)
	r.printf("  the same %d requests with a fresh token: p50 %v, p99 %v\n", n, round(fresh.p50), round(fresh.p99))
	r.figure("requests", float64(n))
	r.figure("met_401", float64(st.Unauthorized))
	r.figure("refresh_calls", float64(st.RefreshCalls))
	r.millis("p50", res.p50)
	r.millis("p99", res.p99)
	r.millis("fresh_p50", fresh.p50)
	r.explain("%d of %d requests met a 401 because they were already on the wire with the old token "+
		"when the first 401 came back; the other %d were sent once, with the new token, held by the token actor "+
		"while its one refresh ran (the token endpoint takes 20 ms here), and every request that met a 401 was "+
		"sent once more with the new token.",
		st.Unauthorized, n, int64(n)-st.Unauthorized)
	r.explain("The p50 of %v compares with %v for the same herd sent again with the fresh token: the "+
		"extra %v is the 401 round trip, the one refresh and the resend, shared by all %d requests; without "+
		"the token actor each of the %d 401s would have started a refresh of its own.",
		round(res.p50), round(fresh.p50), round(res.p50-fresh.p50), n, st.Unauthorized)
	r.check("every request succeeded", res.ok == n, "%d of %d", res.ok, n)
	r.check("exactly one refresh", st.RefreshCalls == 1, "%d refresh calls", st.RefreshCalls)
	r.check("no token family revoked", st.Revocations == 0, "%d revocations", st.Revocations)
}

// proactiveAct: short-lived tokens under steady traffic are refreshed ahead of expiry.
func proactiveAct(r *reporter, _ int) {
	const traffic = 3 * time.Second
	r.begin(2, "tokens live 1 s; 3 s of steady traffic from 8 goroutines")
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Second}) // JWTs: the engine reads exp
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	ctx, cancel := context.WithTimeout(context.Background(), traffic)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := engine.GetJSON[map[string]any](ctx, e, "/items/1"); err == nil {
					ok.Add(1)
				} else if ctx.Err() == nil {
					failed.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitWithBar(ctx, r.progress("steady traffic", int(traffic/(100*time.Millisecond)), true))
	wg.Wait()
	st := srv.Stats()
	r.printf("  requests: %d ok, %d failed; API 401s: %d; refreshes: %d (%d proactive)\n",
		ok.Load(), failed.Load(), st.Unauthorized, st.RefreshCalls, events.proactive())
	r.figure("requests", float64(ok.Load()+failed.Load()))
	r.figure("failed", float64(failed.Load()))
	r.figure("met_401", float64(st.Unauthorized))
	r.figure("refresh_calls", float64(st.RefreshCalls))
	r.figure("proactive_refreshes", float64(events.proactive()))
	r.explain("%d requests ran in 3 s with tokens that live 1 s: the engine reads each token's expiry from "+
		"the JWT and refreshed %d times shortly before it ran out, so no request was ever sent with an "+
		"expired token and the API answered no 401.", ok.Load()+failed.Load(), st.RefreshCalls)
	r.check("no request met a 401", st.Unauthorized == 0, "%d 401s", st.Unauthorized)
	r.check("no request failed", failed.Load() == 0, "%d failed", failed.Load())
	r.check("refreshed ahead of expiry", st.RefreshCalls >= 2 && events.proactive() >= 2, "%d refreshes", st.RefreshCalls)
}

// waitWithBar waits until ctx is done, moving bar one step every 100 ms.
func waitWithBar(ctx context.Context, bar *progress) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			bar.done()
			return
		case <-tick.C:
			bar.add(1)
		}
	}
}

// expiryAct: the refresh token is revoked while requests wait for the refresh.
func expiryAct(r *reporter, n int) {
	r.begin(3, fmt.Sprintf("the refresh token is revoked while %d requests wait", n))
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	srv.SetTokenDelay(50 * time.Millisecond)
	srv.SetTokenFailure(400, `{"error":"invalid_grant","error_description":"refresh token revoked"}`, -1)
	srv.ExpireAccessTokens()
	res := fire(r, e, n, "revoked session")
	st := srv.Stats()
	time.Sleep(50 * time.Millisecond) // events are delivered on their own goroutine
	report(r, res, st, events)
	r.figure("requests", float64(n))
	r.figure("session_expired", float64(res.expired))
	r.figure("refresh_calls", float64(st.RefreshCalls))
	r.millis("p50", res.p50)
	r.millis("slowest", res.slowest)
	r.explain("The one refresh call was refused (invalid_grant: the refresh token is revoked), an answer "+
		"no retry can change, so the token actor failed all %d waiting requests at once with ErrSessionExpired, "+
		"the slowest after %v, instead of each trying a refresh of its own; the application hears of it once, "+
		"through one SessionExpired event, and signs the user in again.", res.expired, round(res.slowest))
	r.check("every request failed with ErrSessionExpired", res.expired == n, "%d of %d", res.expired, n)
	r.check("exactly one refresh call", st.RefreshCalls == 1, "%d", st.RefreshCalls)
	r.check("all failed promptly", res.slowest < 2*time.Second, "slowest %v", round(res.slowest))
	r.check("one SessionExpired event", events.expired() == 1, "%d", events.expired())

	srv.SetTokenFailure(0, "", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.SetTokens(ctx, srv.Login("ada"))
	if err == nil {
		_, err = engine.GetJSON[map[string]any](ctx, e, "/items/1")
	}
	r.check("signing in again (SetTokens) brings the engine back", err == nil, "%v", err)
}

type results struct {
	ok, expired, other int
	p50, p99, slowest  time.Duration
	firstErr           error
}

// fire sends n GETs at once and gathers what came back.
func fire(r *reporter, e *engine.Engine, n int, label string) results {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bar := r.progress(label, n, false)
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			_, errs[i] = engine.GetJSON[map[string]any](ctx, e, fmt.Sprintf("/items/%d", i))
			lat[i] = time.Since(t0)
			bar.add(1)
		}()
	}
	close(start)
	wg.Wait()
	bar.done()
	var res results
	for _, err := range errs {
		switch {
		case err == nil:
			res.ok++
		case errors.Is(err, engine.ErrSessionExpired):
			res.expired++
		default:
			res.other++
			if res.firstErr == nil {
				res.firstErr = err
			}
		}
	}
	slices.Sort(lat)
	res.p50, res.p99, res.slowest = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
	return res
}

func report(r *reporter, res results, st fakeapi.Stats, ev *eventCounter) {
	r.printf("  requests: %d ok, %d session expired, %d other failures\n", res.ok, res.expired, res.other)
	if res.firstErr != nil {
		r.printf("  first other failure: %v\n", res.firstErr)
	}
	r.printf("  server: %d API calls, %d answered 401, %d refresh calls, %d revocations\n",
		st.APIRequests, st.Unauthorized, st.RefreshCalls, st.Revocations)
	r.printf("  latency: p50 %v, p99 %v, slowest %v\n", round(res.p50), round(res.p99), round(res.slowest))
	r.printf("  events: %d TokenRefreshed, %d SessionExpired\n", ev.refreshed(), ev.expired())
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

// eventCounter counts the engine's events.
type eventCounter struct {
	mu                     sync.Mutex
	nRefreshed, nProactive int
	nExpired               int
	nRetries, nRefusals    int
}

func (c *eventCounter) on(ev engine.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev := ev.(type) {
	case *engine.TokenRefreshed:
		c.nRefreshed++
		if ev.Proactive {
			c.nProactive++
		}
	case *engine.SessionExpired:
		c.nExpired++
	case *engine.RetryScheduled:
		c.nRetries++
	case *engine.RetryBudgetExhausted:
		c.nRefusals++
	}
}

func (c *eventCounter) retries() int  { c.mu.Lock(); defer c.mu.Unlock(); return c.nRetries }
func (c *eventCounter) refusals() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nRefusals }

func (c *eventCounter) refreshed() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nRefreshed }
func (c *eventCounter) proactive() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nProactive }
func (c *eventCounter) expired() int   { c.mu.Lock(); defer c.mu.Unlock(); return c.nExpired }

func mustEngine(srv *fakeapi.Server, t engine.Tokens) (*engine.Engine, *eventCounter) {
	e, err := engine.New(
		engine.WithBaseURL(srv.URL()),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(t),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	c := &eventCounter{}
	e.Subscribe(c.on)
	return e, c
}

func closeEngine(e *engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo: close:", err)
	}
}
