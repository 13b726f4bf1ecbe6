package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilientclient/resilient/engine"
)

// BenchmarkParkedRequests parks n requests behind one refresh and reports the heap each parked
// request holds (its goroutine's stack excluded: that is the caller's), and the time from the refresh
// answer to the last request's reply. The token is known to be expired, so requests park without
// sending; the API answers in memory, so what is measured is parking and release, not HTTP.
func BenchmarkParkedRequests(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var heap, release float64
			for b.Loop() {
				h, r := parkOnce(b, n)
				heap += h
				release += r
			}
			b.ReportMetric(heap/float64(b.N), "heapB/parked")
			b.ReportMetric(release/float64(b.N), "ms-release")
		})
	}
}

func parkOnce(b *testing.B, n int) (heapPerParked, releaseMs float64) {
	answer := make(chan struct{})
	var answeredAt atomic.Int64
	e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(memTransport{}),
		engine.WithTokens(engine.Tokens{Access: "old", Refresh: "r", Expiry: time.Now().Add(-time.Second)}),
		engine.WithRefreshFunc(func(ctx context.Context, _ engine.Tokens) (engine.Tokens, error) {
			<-answer
			answeredAt.Store(time.Now().UnixNano())
			return engine.Tokens{Access: "new", Refresh: "r2"}, nil
		}))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Close(context.Background()) }()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	var lastReply atomic.Int64
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := newGet("http://api.test/items/1")
			resp, err := e.Transport().RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			now := time.Now().UnixNano()
			for cur := lastReply.Load(); now > cur && !lastReply.CompareAndSwap(cur, now); cur = lastReply.Load() {
			}
		}()
	}
	close(start)
	time.Sleep(time.Duration(n/50+100) * time.Millisecond) // every request reaches the queue
	runtime.GC()
	runtime.ReadMemStats(&after)
	close(answer)
	wg.Wait()
	heapPerParked = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	releaseMs = float64(lastReply.Load()-answeredAt.Load()) / 1e6
	return heapPerParked, releaseMs
}
