package retry

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// maxDelaySeconds is the largest whole number of seconds a time.Duration holds (about 292 years).
const maxDelaySeconds = math.MaxInt64 / int64(time.Second)

// maxWait is the longest wait ParseRetryAfter returns: larger delta-seconds and dates further away
// saturate to it. It is a whole number of seconds, so a saturated wait written back as delta-seconds
// reads the same.
const maxWait = time.Duration(maxDelaySeconds) * time.Second

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3) received at now and returns the
// wait it asks for. The value is either delta-seconds (ASCII digits only) or an HTTP-date in one of
// the three formats http.ParseTime accepts (IMF-fixdate, RFC 850, asctime); spaces and tabs around it
// are ignored. A date in the past gives (0, true); an empty or invalid value gives (0, false). A wait
// too long for a time.Duration saturates to the largest whole number of seconds one holds (about
// 292 years), never overflowing: a caller must cut the wait to its own limit before waiting.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return 0, false
	}
	if d, ok := parseDeltaSeconds(v); ok {
		return d, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxWait), true // Sub itself saturates, never overflows
}

// parseDeltaSeconds reads a non-empty string of ASCII digits as seconds, saturating at
// maxDelaySeconds; ok is false if v holds anything but digits.
func parseDeltaSeconds(v string) (d time.Duration, ok bool) {
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= maxDelaySeconds { // past it the value only grows, so stop counting
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, maxDelaySeconds)) * time.Second, true
}
