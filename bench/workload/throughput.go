package workload

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// ThroughputResult is W2 for one subject at one concurrency.
type ThroughputResult struct {
	Concurrency int
	OK, Failed  int64         // requests started in the window
	Window      time.Duration // how long requests were started and counted
	ReqPerSec   float64       // OK ÷ Window
	P50, P99    time.Duration // latency of the window's requests, failures included
}

// Throughput runs concurrency workers sending GET /items/{n} with a valid token to a loopback fake
// API, each waiting for its answer before sending again. Requests started during warmup open the
// connections and are not counted; those started during the window that follows are. The
// transport holds maxIdle idle connections. Every request is sent on one shared context, or, with
// perRequest, on a deadline of its own (as a server's handlers would send them).
func Throughput(ctx context.Context, s subjects.Subject, maxIdle, concurrency int, warmup, window time.Duration, perRequest bool) (ThroughputResult, error) {
	r, err := newRig(s, fakeapi.Options{}, maxIdle)
	if err != nil {
		return ThroughputResult{}, err
	}
	defer r.close()
	ctx, cancel := withTimeout(ctx, warmup+window+30*time.Second)
	defer cancel()

	urls := make([]string, 100)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/items/%d", r.srv.URL(), i)
	}
	lat := newLatencies(concurrency, 4096)
	var ok, failed atomic.Int64
	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+window)
	fanOut(concurrency, func(w int) {
		for i := w; ; i++ {
			t0 := time.Now()
			if t0.After(end) || ctx.Err() != nil {
				return
			}
			reqCtx, cancel := ctx, context.CancelFunc(func() {})
			if perRequest {
				reqCtx, cancel = context.WithTimeout(ctx, time.Minute)
			}
			err := checkStatus(r.c.Do(reqCtx, subjects.Request{Method: http.MethodGet, URL: urls[i%len(urls)]}))
			cancel()
			if t0.Before(measureFrom) {
				continue
			}
			lat[w] = append(lat[w], time.Since(t0))
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return ThroughputResult{}, fmt.Errorf("%s c=%d: %w", s.Name, concurrency, err)
	}
	all := lat.all()
	return ThroughputResult{
		Concurrency: concurrency, OK: ok.Load(), Failed: failed.Load(), Window: window,
		ReqPerSec: float64(ok.Load()) / window.Seconds(),
		P50:       Quantile(all, 0.50), P99: Quantile(all, 0.99),
	}, nil
}
