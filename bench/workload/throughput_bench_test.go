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
// a valid token over loopback from 64 goroutines (RunParallel × 32 on two cores), each on a
// context that can be cancelled, as W2's are:
//
//	cd bench && go test -run '^$' -bench 'Throughput/engine$' -cpuprofile cpu.prof ./workload
func BenchmarkThroughput(b *testing.B) {
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
					if err := checkStatus(r.c.Do(ctx, subjects.Request{Method: http.MethodGet, URL: urls[i%len(urls)]})); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
