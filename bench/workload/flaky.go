package workload

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// FlakyResult is W5 for one subject.
type FlakyResult struct {
	Rate        float64       // logical requests started per second (offered load)
	Logical, OK int64         // logical requests started, and those that ended in a 2xx
	Window      time.Duration // how long requests were started
	Goodput     float64       // OK ÷ Window, per second
	// Posts is how many logical requests were POST /orders (each with a body no other has);
	// Orders how many orders the server created; Duplicates how many of those repeat an earlier
	// one (a retry without an Idempotency-Key after a lost answer).
	Posts, Orders, Duplicates int64
	Attempts                  int64 // API requests the server received
	// P50 and P99 are latencies from each request's scheduled start to its outcome, failures
	// included.
	P50, P99 time.Duration
}

// Flaky offers rate logical requests a second for window, open loop: each starts on schedule
// whether or not earlier ones have finished, so a client that retries pays in latency, not in
// requests it never sent. Every postEvery-th request is a POST /orders with a body of its own, the
// others GET /items/{n}. After a warm-up of warm concurrent GETs that opens connections, the fake
// API fails a random fraction of requests as f says.
func Flaky(ctx context.Context, s subjects.Subject, maxIdle, warm int, rate float64, window time.Duration, f fakeapi.Flakiness, postEvery int) (FlakyResult, error) {
	r, err := newRig(s, fakeapi.Options{}, maxIdle)
	if err != nil {
		return FlakyResult{}, err
	}
	defer r.close()
	ctx, cancel := withTimeout(ctx, window+2*requestTimeout)
	defer cancel()
	if err := r.warm(ctx, warm); err != nil {
		return FlakyResult{}, fmt.Errorf("%s: warm-up: %w", s.Name, err)
	}
	before := r.srv.Stats().APIRequests
	r.srv.SetFlakiness(f)
	defer r.srv.SetFlakiness(fakeapi.Flakiness{})

	total := int(rate * window.Seconds())
	lat := make([]time.Duration, total)
	var ok, posts atomic.Int64
	var wg sync.WaitGroup
	base := r.srv.URL()
	start := time.Now()
	for n := 0; n < total && ctx.Err() == nil; {
		// Start every request whose time has come, then sleep until the next one's.
		due := int(time.Since(start).Seconds()*rate) + 1
		for ; n < min(due, total); n++ {
			req := subjects.Request{Method: http.MethodGet, URL: base + "/items/" + strconv.Itoa(n%100)}
			if postEvery > 0 && n%postEvery == postEvery-1 {
				req = subjects.Request{Method: http.MethodPost, URL: base + "/orders", Body: []byte(`{"n":` + strconv.Itoa(n) + `}`)}
				posts.Add(1)
			}
			i, scheduled := n, start.Add(time.Duration(float64(n)/rate*float64(time.Second)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx, rcancel := withTimeout(ctx, requestTimeout)
				status, err := r.c.Do(rctx, req)
				rcancel()
				lat[i] = time.Since(scheduled)
				if err == nil && status >= 200 && status < 300 {
					ok.Add(1)
				}
			}()
		}
		next := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
		sleep(ctx, time.Until(next))
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return FlakyResult{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	res := FlakyResult{
		Rate: rate, Logical: int64(total), OK: ok.Load(), Window: window,
		Goodput: float64(ok.Load()) / window.Seconds(),
		Posts:   posts.Load(), Orders: r.srv.Orders(), Duplicates: r.srv.DuplicateOrders(),
		Attempts: r.srv.Stats().APIRequests - before,
		P50:      Quantile(lat, 0.5), P99: Quantile(lat, 0.99),
	}
	return res, nil
}
