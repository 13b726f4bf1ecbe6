package workload

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// BenchmarkThroughput is W2 as a go test benchmark, for profiling one subject at a time: GETs with
// a valid token over loopback from 64 goroutines (RunParallel × 32 on two cores), all on one
// context that can be cancelled, as W2's are (shared-ctx), or each request on a deadline of its own
// (ctx-per-request, as a server's handlers would send them):
//
//	cd bench && go test -run '^$' -bench 'Throughput/shared-ctx/engine$' -cpuprofile cpu.prof ./workload
func BenchmarkThroughput(b *testing.B) {
	for _, perRequest := range []bool{false, true} {
		name := "shared-ctx"
		if perRequest {
			name = "ctx-per-request"
		}
		b.Run(name, func(b *testing.B) { benchmarkThroughput(b, perRequest) })
	}
}

func benchmarkThroughput(b *testing.B, perRequest bool) {
	for _, s := range subjects.All() {
		if s.New == nil {
			continue
		}
		b.Run(s.Name, func(b *testing.B) {
			r, err := newRig(s, fakeapi.Options{}, 1024)
			if err != nil {
				b.Fatal(err)
			}
			defer r.close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			urls := make([]string, 100)
			for i := range urls {
				urls[i] = fmt.Sprintf("%s/items/%d", r.srv.URL(), i)
			}
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					reqCtx, cancel := ctx, context.CancelFunc(func() {})
					if perRequest {
						reqCtx, cancel = context.WithTimeout(ctx, time.Minute)
					}
					err := checkStatus(r.c.Do(reqCtx, subjects.Request{Method: http.MethodGet, URL: urls[i%len(urls)]}))
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
