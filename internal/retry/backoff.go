package retry

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff returns the wait before retry number retry (1 for the first retry; lower counts as 1):
// exponential backoff with full jitter, as in the AWS Architecture Blog's "Exponential Backoff and
// Jitter". The ceiling is min(max, base·2^(retry-1)), and the wait is drawn uniformly from
// [0, ceiling] with randN(ceiling+1). randN behaves like math/rand/v2.Int64N, which is used when
// randN is nil. A base or max of zero or less gives 0. The computation never overflows: the ceiling
// is held below math.MaxInt64 so that ceiling+1 fits.
//
// Backoff is safe for concurrent use when randN is.
func Backoff(retry int, base, max time.Duration, randN func(n int64) int64) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	shift := uint(0)
	if retry > 1 {
		shift = uint(min(retry-1, 63))
	}
	ceiling := max
	if shift < 63 && base <= max>>shift {
		ceiling = base << shift // no overflow: base·2^shift ≤ max
	}
	ceiling = min(ceiling, math.MaxInt64-1)
	if randN == nil {
		randN = rand.Int64N
	}
	d := time.Duration(randN(int64(ceiling) + 1))
	if d < 0 { // clamp a misbehaving randN; Int64N never needs it
		d = 0
	}
	return min(d, ceiling)
}

// Sleep waits d, or until ctx ends, and reports whether it waited the whole of d (false when ctx
// ended first; a d of zero or less waits nothing and reports whether ctx is still live).
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
