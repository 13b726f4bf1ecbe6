package retry

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is a pinned time on a whole second, so slots of 1 s start on it.
var t0 = time.Date(2024, time.March, 15, 12, 0, 0, 0, time.UTC)

// allowed calls TryRetry n times at now and returns how many were allowed.
func allowed(b *Budget, now time.Time, n int) int {
	k := 0
	for range n {
		if b.TryRetry(now) {
			k++
		}
	}
	return k
}

// requests calls Request n times at now.
func requests(b *Budget, now time.Time, n int) {
	for range n {
		b.Request(now)
	}
}

func TestBudgetRatio(t *testing.T) {
	b := NewBudget(0.2, 0, 10*time.Second)
	assert.Equal(t, 0, allowed(b, t0, 5), "no requests and no floor: no retries")
	requests(b, t0, 100)
	assert.Equal(t, 20, allowed(b, t0, 100))
	requests(b, t0.Add(time.Second), 5)
	assert.Equal(t, 1, allowed(b, t0.Add(time.Second), 10), "105 requests allow 21 retries")
}

func TestBudgetFloor(t *testing.T) {
	b := NewBudget(0.2, 10, 10*time.Second)
	assert.Equal(t, 10, allowed(b, t0, 15))
	assert.Equal(t, 0, allowed(b, t0.Add(time.Second-time.Nanosecond), 5), "still the same second")
	assert.Equal(t, 10, allowed(b, t0.Add(time.Second), 15), "a new second, a new floor")
}

func TestBudgetRatioAndFloor(t *testing.T) {
	b := NewBudget(0.2, 5, 10*time.Second)
	requests(b, t0, 100)
	assert.Equal(t, 20, allowed(b, t0, 100), "the ratio allows 20; the floor's 5 are among them")
	assert.Equal(t, 5, allowed(b, t0.Add(time.Second), 100), "the ratio is spent; the floor still gives 5")
}

func TestBudgetWindow(t *testing.T) {
	b := NewBudget(0.2, 0, 10*time.Second)
	requests(b, t0, 100)
	assert.Equal(t, 20, allowed(b, t0, 100))

	t5 := t0.Add(5 * time.Second)
	requests(b, t5, 100)
	assert.Equal(t, 20, allowed(b, t5, 100), "200 requests and 20 retries in the window")

	last := t0.Add(10*time.Second - time.Nanosecond)
	assert.Equal(t, 0, allowed(b, last, 10), "t0's slot still counts until the window has passed")
	assert.Equal(t, int64(200), b.requestsIn(b.period(last)))

	t10 := t0.Add(10 * time.Second)
	assert.Equal(t, int64(100), b.requestsIn(b.period(t10)), "t0's requests stopped counting")
	assert.Equal(t, int64(20), b.retriesIn(b.period(t10)), "so did t0's retries")
	assert.Equal(t, 0, allowed(b, t10, 10), "100 requests and 20 retries from t5 remain")

	t15 := t0.Add(15 * time.Second)
	assert.Equal(t, int64(0), b.requestsIn(b.period(t15)))
	requests(b, t15, 10)
	assert.Equal(t, 2, allowed(b, t15, 10), "a fresh window")
}

func TestBudgetSlotReuse(t *testing.T) {
	b := NewBudget(0.5, 0, 10*time.Second)
	requests(b, t0, 100)
	t10 := t0.Add(10 * time.Second) // the same ring slot as t0, one window later
	requests(b, t10, 4)
	assert.Equal(t, int64(4), b.requestsIn(b.period(t10)), "the slot was recycled, not added to")
	assert.Equal(t, 2, allowed(b, t10, 10))
}

func TestBudgetLateRequest(t *testing.T) {
	b := NewBudget(1, 0, 10*time.Second)
	t10 := t0.Add(10 * time.Second)
	requests(b, t10, 3)
	requests(b, t0, 7) // a whole window late: its slot already serves t10
	assert.Equal(t, int64(3), b.requestsIn(b.period(t10)))
	requests(b, t10.Add(-time.Second), 2) // late but inside the window: counted
	assert.Equal(t, int64(5), b.requestsIn(b.period(t10)))
}

func TestBudgetUnlimited(t *testing.T) {
	b := NewBudget(-1, 0, 10*time.Second)
	assert.Equal(t, 1000, allowed(b, t0, 1000), "no requests needed")
	assert.Equal(t, int64(1000), b.retriesIn(b.period(t0)), "retries are still counted")
}

func TestBudgetZeroRatio(t *testing.T) {
	b := NewBudget(0, 3, 10*time.Second)
	requests(b, t0, 1000)
	assert.Equal(t, 3, allowed(b, t0, 10), "only the floor")
}

func TestBudgetDefaults(t *testing.T) {
	for _, window := range []time.Duration{0, -time.Second} {
		b := NewBudget(0.2, -3, window)
		assert.Equal(t, int64(time.Second), b.width, "a window of %v means 10 s", window)
		assert.Equal(t, int64(0), b.floor, "a negative floor means none")
	}
	tiny := NewBudget(0.2, 0, 5) // 5 ns: slots cannot be narrower than 1 ns
	assert.Equal(t, int64(1), tiny.width)
	requests(tiny, t0, 10)
	assert.Equal(t, 2, allowed(tiny, t0, 10))
}

func TestBudgetBeforeEpoch(t *testing.T) {
	b := NewBudget(0.5, 0, 10*time.Second)
	old := time.Date(1960, time.January, 1, 0, 0, 0, 500, time.UTC)
	require.Less(t, old.UnixNano(), int64(0))
	requests(b, old, 10)
	assert.Equal(t, 5, allowed(b, old, 10))
	assert.Equal(t, int64(0), b.requestsIn(b.period(old.Add(10*time.Second))))
}

func TestBudgetConcurrent(t *testing.T) {
	const (
		goroutines = 200
		each       = 1000
		ratio      = 0.1
		want       = goroutines * each / 10 // ratio × requests, exactly
	)
	b := NewBudget(ratio, 0, 10*time.Second)
	flood := func(now time.Time) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-start
				requests(b, now, each)
			})
		}
		close(start)
		wg.Wait()
	}

	flood(t0)
	require.Equal(t, int64(goroutines*each), b.requestsIn(b.period(t0)))
	assert.Equal(t, want, allowed(b, t0, 2*want))

	// One window later every goroutine meets the same stale slot at once and races to recycle it:
	// no request may be lost, and nothing of t0 may remain.
	t10 := t0.Add(10 * time.Second)
	flood(t10)
	require.Equal(t, int64(goroutines*each), b.requestsIn(b.period(t10)))
	assert.Equal(t, want, allowed(b, t10, 2*want))
}

func TestBudgetConcurrentAcrossSlots(t *testing.T) {
	// Requests spread over half the window, crossing slot boundaries while TryRetry reads: every
	// request counts.
	const goroutines, each = 50, 2000
	b := NewBudget(1, 0, 10*time.Second)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				b.Request(t0.Add(time.Duration(g*each+i) * (5 * time.Second / (goroutines * each))))
			}
		})
	}
	wg.Go(func() {
		for range 1000 {
			b.TryRetry(t0.Add(5 * time.Second))
		}
	})
	wg.Wait()
	assert.Equal(t, int64(goroutines*each), b.requestsIn(b.period(t0.Add(5*time.Second))))
}

func TestBudgetRequestDoesNotAllocate(t *testing.T) {
	b := NewBudget(0.2, 10, 10*time.Second)
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		b.Request(now)
		now = now.Add(time.Second / 3)
	})
	assert.Zero(t, allocs)
}

func BenchmarkBudgetRequest(b *testing.B) {
	budget := NewBudget(0.2, 10, 10*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Request(t0)
		}
	})
}

func BenchmarkBudgetRequestClock(b *testing.B) {
	budget := NewBudget(0.2, 10, 10*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Request(time.Now())
		}
	})
}

func BenchmarkBudgetTryRetry(b *testing.B) {
	budget := NewBudget(0.2, 10, 10*time.Second)
	requests(budget, t0, 1000)
	b.ReportAllocs()
	for b.Loop() {
		budget.TryRetry(t0)
	}
}
