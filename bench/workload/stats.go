package workload

import (
	"slices"
	"sync/atomic"
	"time"
)

// Quantile returns the q-quantile (0 ≤ q ≤ 1, nearest rank) of ds, sorting ds in place; 0 for none.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	i := int(q*float64(len(ds))+0.5) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i]
}

// latencies collects request durations from many goroutines, one slice per worker, so that
// recording takes no lock.
type latencies [][]time.Duration

func newLatencies(workers, capEach int) latencies {
	l := make(latencies, workers)
	for i := range l {
		l[i] = make([]time.Duration, 0, capEach)
	}
	return l
}

// all returns every recorded duration, sorted.
func (l latencies) all() []time.Duration {
	n := 0
	for _, w := range l {
		n += len(w)
	}
	out := make([]time.Duration, 0, n)
	for _, w := range l {
		out = append(out, w...)
	}
	slices.Sort(out)
	return out
}

// maxTime keeps the latest of many times, from many goroutines.
type maxTime struct{ v atomic.Int64 }

func (m *maxTime) observe(t time.Time) {
	n := t.UnixNano()
	for cur := m.v.Load(); n > cur && !m.v.CompareAndSwap(cur, n); cur = m.v.Load() {
	}
}

// get returns the latest time observed, or the zero time.
func (m *maxTime) get() time.Time {
	if n := m.v.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
