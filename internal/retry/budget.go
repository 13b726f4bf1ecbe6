package retry

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// slots is the number of slots in a Budget's sliding window.
const slots = 10

// defaultWindow is the window NewBudget uses when given a window of zero or less.
const defaultWindow = 10 * time.Second

// Budget bounds retries to a fraction of the logical requests of a sliding window, plus a small floor
// per second. A retry is allowed when the retries of the window are fewer than ratio × its requests,
// or when the retries of the current second are fewer than the floor. It keeps retries from
// multiplying the load on a host that is already failing, while a host with little traffic can still
// retry a few requests.
//
// The window is a ring of 10 slots, each a tenth of the window wide, indexed by time; a slot is
// reused, and its old counts dropped, once it is a whole window old. The times given should not go
// back by more than a window (as a wall clock stepped back might): events stamped before a slot's
// newest use are not counted, so until time catches up only the floor lets retries through.
//
// A Budget is safe for concurrent use. Request is lock-free and does not allocate, for the hot path;
// TryRetry takes a mutex.
type Budget struct {
	ratio float64 // negative: unlimited
	floor int64   // retries a second allowed whatever the ratio says; 0: none
	width int64   // nanoseconds per slot

	requests [slots]requestSlot // written by Request without locks

	mu       sync.Mutex       // guards retries, second and inSecond
	retries  [slots]retrySlot // retries allowed, by slot
	second   int64            // the Unix second inSecond counts
	inSecond int64            // retries allowed during second
}

// requestSlot counts the requests of one slot period. stamp is the period (UnixNano / width) the
// count belongs to; it only moves forward.
type requestSlot struct {
	stamp atomic.Int64
	n     atomic.Int64
}

// retrySlot counts the retries of one slot period, like requestSlot, under Budget.mu.
type retrySlot struct {
	stamp int64
	n     int64
}

// NewBudget returns a Budget that allows ratio retries per logical request over the sliding window,
// and at least minPerSecond retries in each second of the clock. A negative ratio means no limit
// (retries are still counted); a ratio of zero (or NaN) leaves only the floor. minPerSecond of zero or
// less means no floor. A window of zero or less means 10 s.
func NewBudget(ratio float64, minPerSecond int, window time.Duration) *Budget {
	if math.IsNaN(ratio) {
		ratio = 0
	}
	if window <= 0 {
		window = defaultWindow
	}
	b := &Budget{
		ratio: ratio,
		floor: int64(max(minPerSecond, 0)),
		width: max(int64(window/slots), 1),
	}
	for i := range b.requests {
		b.requests[i].stamp.Store(math.MinInt64) // older than any period: counts nothing
		b.retries[i].stamp = math.MinInt64
	}
	return b
}

// Request counts one logical request made at now. It is cheap: a few atomic operations, no lock and
// no allocation.
//
// A slot left over from an older period is recycled by whichever Request first swaps its stamp
// forward; that Request then subtracts the count it read before the swap. So requests racing a
// recycle are not lost. The counts may be slightly off only when a goroutine is a whole window
// late: a request stamped with the expired period that lands between the recycler's read and its
// swap is counted in the new period, and a goroutine stalled for a whole window in the middle of a
// recycle can skew one slot until it expires. TryRetry, reading while a recycle is under way, may
// briefly see the expired count. Each error is small and leaves within one window.
func (b *Budget) Request(now time.Time) {
	p := b.period(now)
	s := &b.requests[index(p)]
	for {
		stamp := s.stamp.Load()
		switch {
		case stamp == p:
			s.n.Add(1)
			return
		case stamp > p:
			return // the slot already serves a period a window later: this request is out of it
		}
		old := s.n.Load()
		if s.stamp.CompareAndSwap(stamp, p) {
			s.n.Add(1 - old)
			return
		}
		// Another Request moved the stamp first; look again.
	}
}

// TryRetry reports whether a retry at now is within the budget, and if so counts it.
func (b *Budget) TryRetry(now time.Time) bool {
	p := b.period(now)
	sec := now.Unix()

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.second != sec {
		b.second, b.inSecond = sec, 0
	}
	ok := b.ratio < 0 || b.inSecond < b.floor
	if !ok && b.ratio > 0 {
		ok = float64(b.retriesIn(p)) < b.ratio*float64(b.requestsIn(p))
	}
	if !ok {
		return false
	}
	b.inSecond++
	r := &b.retries[index(p)]
	switch {
	case r.stamp == p:
		r.n++
	case r.stamp < p:
		r.stamp, r.n = p, 1
	}
	return true
}

// requestsIn sums the requests of the window that ends with period p.
func (b *Budget) requestsIn(p int64) int64 {
	var sum int64
	for i := range b.requests {
		s := &b.requests[i]
		if stamp := s.stamp.Load(); inWindow(stamp, p) {
			sum += max(s.n.Load(), 0)
		}
	}
	return sum
}

// retriesIn sums the retries of the window that ends with period p. b.mu must be held.
func (b *Budget) retriesIn(p int64) int64 {
	var sum int64
	for _, r := range b.retries {
		if inWindow(r.stamp, p) {
			sum += r.n
		}
	}
	return sum
}

// period returns the slot period now falls in: floor(now.UnixNano() / width).
func (b *Budget) period(now time.Time) int64 {
	ns := now.UnixNano()
	p := ns / b.width
	if ns%b.width < 0 {
		p--
	}
	return p
}

// index returns the ring position of period p.
func index(p int64) int {
	return int((p%slots + slots) % slots)
}

// inWindow reports whether a slot stamped with period stamp lies in the window ending with period p.
// The difference is taken unsigned so that it cannot overflow.
func inWindow(stamp, p int64) bool {
	return stamp <= p && uint64(p)-uint64(stamp) < slots
}
