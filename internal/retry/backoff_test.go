package retry

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	const (
		ms      = time.Millisecond
		maxDur  = time.Duration(math.MaxInt64)
		nearMax = maxDur - 1 // the highest ceiling: ceiling+1 must fit in an int64
	)
	for _, tc := range []struct {
		name            string
		retry           int
		base, max, ceil time.Duration
	}{
		{"first retry", 1, 100 * ms, 10 * time.Second, 100 * ms},
		{"second retry", 2, 100 * ms, 10 * time.Second, 200 * ms},
		{"third retry", 3, 100 * ms, 10 * time.Second, 400 * ms},
		{"seventh retry", 7, 100 * ms, 10 * time.Second, 6400 * ms},
		{"eighth retry hits max", 8, 100 * ms, 10 * time.Second, 10 * time.Second},
		{"exactly max", 3, 2500 * ms, 10 * time.Second, 10 * time.Second},
		{"zero counts as one", 0, 100 * ms, 10 * time.Second, 100 * ms},
		{"negative counts as one", -5, 100 * ms, 10 * time.Second, 100 * ms},
		{"retry 1000 does not overflow", 1000, 100 * ms, 10 * time.Second, 10 * time.Second},
		{"largest int retry", math.MaxInt, 100 * ms, 10 * time.Second, 10 * time.Second},
		{"base above max", 1, time.Minute, 10 * time.Second, 10 * time.Second},
		{"1ns doubled 62 times", 63, 1, maxDur, 1 << 62},
		{"1ns doubled 63 times", 64, 1, maxDur, nearMax},
		{"base near MaxInt64", 1, maxDur - 5, maxDur, maxDur - 5},
		{"base near MaxInt64, second retry", 2, maxDur - 5, maxDur, nearMax},
		{"base and max MaxInt64", 1000, maxDur, maxDur, nearMax},
		{"zero base", 3, 0, 10 * time.Second, 0},
		{"negative base", 3, -time.Second, 10 * time.Second, 0},
		{"zero max", 3, 100 * ms, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []int64
			top := func(n int64) int64 { asked = append(asked, n); return n - 1 }
			bottom := func(n int64) int64 { asked = append(asked, n); return 0 }

			assert.Equal(t, tc.ceil, Backoff(tc.retry, tc.base, tc.max, top), "the highest draw is the ceiling")
			assert.Equal(t, time.Duration(0), Backoff(tc.retry, tc.base, tc.max, bottom), "the lowest draw is zero")
			if tc.ceil > 0 {
				assert.Equal(t, []int64{int64(tc.ceil) + 1, int64(tc.ceil) + 1}, asked, "randN(ceiling+1)")
			} else {
				assert.Empty(t, asked, "no draw when the ceiling is zero")
			}
		})
	}
}

func TestBackoffClampsRandN(t *testing.T) {
	assert.Equal(t, 100*time.Millisecond, Backoff(1, 100*time.Millisecond, time.Second, func(n int64) int64 { return n + 5 }))
	assert.Equal(t, time.Duration(0), Backoff(1, 100*time.Millisecond, time.Second, func(int64) int64 { return -1 }))
}

func TestBackoffJitter(t *testing.T) {
	const (
		draws   = 5000
		ceiling = 400 * time.Millisecond // retry 3, base 100 ms
	)
	var sum, lo, hi time.Duration
	lo = ceiling
	for range draws {
		d := Backoff(3, 100*time.Millisecond, 10*time.Second, nil)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, ceiling)
		sum += d
		lo, hi = min(lo, d), max(hi, d)
	}
	// Uniform on [0, 400 ms]: mean 200 ms, standard deviation of the mean about 1.6 ms over 5000 draws.
	mean := sum / draws
	assert.InDelta(t, float64(ceiling/2), float64(mean), float64(12*time.Millisecond), "mean %v", mean)
	assert.Less(t, lo, ceiling/10, "draws reach near zero")
	assert.Greater(t, hi, ceiling*9/10, "draws reach near the ceiling")
}

func TestSleep(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"no wait, live", live, 0, true},
		{"negative wait, live", live, -time.Second, true},
		{"no wait, ended", ended, 0, false},
		{"a wait, live", live, time.Millisecond, true},
		{"a long wait, ended", ended, time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			assert.Equal(t, tc.want, Sleep(tc.ctx, tc.d))
			assert.Less(t, time.Since(start), time.Minute, "an ended context ends the wait")
		})
	}
}
