package bench

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// memOptions are an engine on the in-memory transport with a valid token and a refresh function
// that is never needed.
func memOptions(extra ...engine.Option) []engine.Option {
	return append([]engine.Option{
		engine.WithBaseURL("http://api.test"), engine.WithTransport(memTransport{}),
		engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}),
		engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) {
			return engine.Tokens{Access: "b", Expiry: time.Now().Add(time.Hour)}, nil
		}),
	}, extra...)
}

// BenchmarkNewClose is what an engine costs to make and close: the target is microseconds and
// kilobytes (the actor system is the process's, made once).
func BenchmarkNewClose(b *testing.B) {
	opts := memOptions()
	e, err := engine.New(opts...) // the process's actor system is made once, before the clock runs
	if err != nil {
		b.Fatal(err)
	}
	_ = e.Close(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		e, err := engine.New(opts...)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFamilyHotPath is W1's hot path (a valid token, an in-memory answer) through the
// engine's default family and through one of its families, on the same engine.
func BenchmarkFamilyHotPath(b *testing.B) {
	const url = "http://api.test/items/1"
	e, err := engine.New(memOptions(engine.WithFamilyStore(&engine.MemoryFamilyStore{}))...)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Close(context.Background()) }()
	f, err := e.Family("tenant-1")
	if err != nil {
		b.Fatal(err)
	}
	if err := f.SetTokens(context.Background(), engine.Tokens{Access: "t", Refresh: "r", Expiry: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"default", e.Client()}, {"family", f.Client()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				get(b, c.client, url)
			}
		})
	}
}

// BenchmarkFamilyMemory measures what a family costs while active (its token actor running) and
// once passivated, per family, over 10,000 families: heap in use after a collection, and
// goroutines. One iteration is the whole measurement; run it with -benchtime=1x.
func BenchmarkFamilyMemory(b *testing.B) {
	const n = 10000
	const idle = 200 * time.Millisecond
	for b.Loop() {
		store := &engine.MemoryFamilyStore{}
		for i := range n {
			_ = store.Save(context.Background(), key(i), engine.Tokens{Access: "t" + key(i), Refresh: "r", Expiry: time.Now().Add(time.Hour)})
		}
		e, err := engine.New(memOptions(engine.WithFamilyStore(store), engine.WithFamilyIdleTimeout(idle))...)
		if err != nil {
			b.Fatal(err)
		}
		heap0, g0 := heapInUse(), runtime.NumGoroutine()
		for i := range n {
			f, err := e.Family(key(i))
			if err != nil {
				b.Fatal(err)
			}
			get(b, f.Client(), "http://api.test/items/1")
		}
		heapActive, gActive := heapInUse(), runtime.NumGoroutine()
		// Passivation: each family is checked every idle period and stops once it went a whole
		// period unused; wait until the heap stops shrinking.
		time.Sleep(3 * idle)
		heapIdle := heapInUse()
		for range 50 {
			time.Sleep(idle)
			h := heapInUse()
			if h >= heapIdle-1024 {
				heapIdle = min(h, heapIdle)
				break
			}
			heapIdle = h
		}
		gIdle := runtime.NumGoroutine()
		b.ReportMetric(float64(heapActive-heap0)/n, "heapB/active-family")
		b.ReportMetric(float64(heapIdle-heap0)/n, "heapB/idle-family")
		b.ReportMetric(float64(gActive-g0)/n, "goroutines/active-family")
		b.ReportMetric(float64(gIdle-g0)/n, "goroutines/idle-family")
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func key(i int) string { return fmt.Sprintf("tenant-%05d", i) }

// heapInUse is the live heap after two collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkFamilyStorm: 10,000 families on the fake API over loopback, each with 20 requests, across
// one expiry of every access token, with the default bound on concurrent refreshes. Reported: the
// time from the expiry to the last reply, refresh calls (one per family expected), the most refresh
// calls in flight at once, and failures. 250 families (5,000 requests) are in flight at a time:
// both ends of every connection are in this process, whose file descriptors are bounded. Run it with -benchtime=1x.
func BenchmarkFamilyStorm(b *testing.B) {
	const families, perFamily, atOnce = 10000, 20, 250
	for b.Loop() {
		srv := fakeapi.Start(fakeapi.Options{})
		store := &engine.MemoryFamilyStore{}
		for i := range families {
			_ = store.Save(context.Background(), key(i), srv.Login(key(i)))
		}
		e, err := engine.New(engine.WithBaseURL(srv.URL()), engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
			engine.WithFamilyStore(store))
		if err != nil {
			b.Fatal(err)
		}
		fams := make([]*engine.Family, families)
		for i := range fams {
			fams[i], _ = e.Family(key(i))
		}
		srv.ExpireAccessTokens()
		var failed, wrong atomic.Int64
		start := time.Now()
		sem := make(chan struct{}, atOnce)
		var wg sync.WaitGroup
		for _, f := range fams {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var inner sync.WaitGroup
				for range perFamily {
					inner.Add(1)
					go func() {
						defer inner.Done()
						ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
						defer cancel()
						got, err := engine.GetJSON[map[string]string](ctx, f, "/me")
						switch {
						case err != nil:
							if failed.Add(1) == 1 {
								b.Log(err)
							}
						case got["user"] != f.Key():
							wrong.Add(1)
						}
					}()
				}
				inner.Wait()
			}()
		}
		wg.Wait()
		took := time.Since(start)
		st := srv.Stats()
		b.ReportMetric(float64(took.Milliseconds()), "ms-to-last-reply")
		b.ReportMetric(float64(st.RefreshCalls), "refreshes")
		b.ReportMetric(float64(st.PeakRefreshes), "peak-refreshes-in-flight")
		b.ReportMetric(float64(st.ReuseDetected), "reuse")
		b.ReportMetric(float64(failed.Load()+wrong.Load()), "failed")
		_ = e.Close(context.Background())
		srv.Close()
	}
}
