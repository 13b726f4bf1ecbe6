package bench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/bench/workload"
)

// BenchmarkSubjects is the harness's W1 as a go test benchmark, one sub-benchmark per subject, for
// profiling one subject at a time, with requests on context.Background or (as the harness's are) on
// a context that can be cancelled:
//
//	cd bench && go test -run '^$' -bench 'Subjects/cancellable/engine$' -benchmem -cpuprofile cpu.prof .
//	go tool pprof -top cpu.prof
func BenchmarkSubjects(b *testing.B) {
	for _, cancellable := range []bool{false, true} {
		name := "background"
		if cancellable {
			name = "cancellable"
		}
		b.Run(name, func(b *testing.B) { benchmarkSubjects(b, cancellable) })
	}
}

func benchmarkSubjects(b *testing.B, cancellable bool) {
	for _, s := range subjects.All() {
		if s.New == nil {
			continue
		}
		b.Run(s.Name, func(b *testing.B) {
			c, err := s.New(subjects.Env{
				BaseURL: "http://api.test", TokenURL: "http://api.test/oauth/token",
				Tokens:    subjects.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)},
				Transport: workload.Static{},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Close(context.Background()) }()
			req := subjects.Request{Method: http.MethodGet, URL: "http://api.test/items/1"}
			ctx := context.Background()
			if cancellable {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			b.ReportAllocs()
			for b.Loop() {
				if status, err := c.Do(ctx, req); err != nil || status != http.StatusOK {
					b.Fatal(status, err)
				}
			}
		})
	}
}
