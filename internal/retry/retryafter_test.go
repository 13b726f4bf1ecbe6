package retry

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	// Friday 15 March 2024, 12:00:00 UTC.
	now := time.Date(2024, time.March, 15, 12, 0, 0, 0, time.UTC)
	huge := time.Duration(math.MaxInt64/int64(time.Second)) * time.Second // about 292 years
	for _, tc := range []struct {
		name string
		v    string
		want time.Duration
		ok   bool
	}{
		{"zero", "0", 0, true},
		{"one", "1", time.Second, true},
		{"two minutes", "120", 2 * time.Minute, true},
		{"spaces around", " 5 ", 5 * time.Second, true},
		{"tabs around", "\t5\t", 5 * time.Second, true},
		{"leading zeros", "007", 7 * time.Second, true},
		{"largest exact", "9223372036", huge, true},
		{"just past largest", "9223372037", huge, true},
		{"huge saturates", "99999999999999999999", huge, true},
		{"very long saturates", "9999999999999999999999999999999999999999", huge, true},
		{"negative", "-1", 0, false},
		{"plus sign", "+1", 0, false},
		{"fraction", "1.5", 0, false},
		{"letters", "abc", 0, false},
		{"unit", "5s", 0, false},
		{"inner space", "1 0", 0, false},
		{"hex", "0x10", 0, false},
		{"non-ASCII digit", "\uff15", 0, false},
		{"newline around", "5\n", 0, false},
		{"empty", "", 0, false},
		{"blank", "  ", 0, false},

		{"IMF-fixdate", "Fri, 15 Mar 2024 12:00:30 GMT", 30 * time.Second, true},
		{"RFC 850", "Friday, 15-Mar-24 12:00:30 GMT", 30 * time.Second, true},
		{"asctime", "Fri Mar 15 12:00:30 2024", 30 * time.Second, true},
		{"asctime single-digit day", "Fri Mar  1 12:00:00 2024", 0, true},
		{"date with spaces around", "  Fri, 15 Mar 2024 12:00:30 GMT ", 30 * time.Second, true},
		{"date one second ahead", "Fri, 15 Mar 2024 12:00:01 GMT", time.Second, true},
		{"date exactly now", "Fri, 15 Mar 2024 12:00:00 GMT", 0, true},
		{"date one second past", "Fri, 15 Mar 2024 11:59:59 GMT", 0, true},
		{"date in the past", "Sun, 06 Nov 1994 08:49:37 GMT", 0, true},
		{"date far in the future", "Fri, 31 Dec 9999 23:59:59 GMT", huge, true},
		{"date a year ahead", "Sat, 15 Mar 2025 12:00:00 GMT", 365 * 24 * time.Hour, true},
		{"date in another zone", "Fri, 15 Mar 2024 12:00:30 PST", 0, false},
		{"date without zone", "Fri, 15 Mar 2024 12:00:30", 0, false},
		{"ISO 8601", "2024-03-15T12:00:30Z", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.v, now)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseRetryAfterFormatsFromNetHTTP(t *testing.T) {
	now := time.Date(2024, time.March, 15, 12, 0, 0, 0, time.UTC)
	at := now.Add(30 * time.Second)
	for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC} {
		v := at.Format(layout)
		got, ok := ParseRetryAfter(v, now)
		require.True(t, ok, v)
		assert.Equal(t, 30*time.Second, got, v)
	}
}

func TestParseRetryAfterSubSecondNow(t *testing.T) {
	// Dates have whole seconds; the wait is measured from the exact now.
	now := time.Date(2024, time.March, 15, 12, 0, 0, 250*int(time.Millisecond), time.UTC)
	got, ok := ParseRetryAfter("Fri, 15 Mar 2024 12:00:30 GMT", now)
	require.True(t, ok)
	assert.Equal(t, 29*time.Second+750*time.Millisecond, got)
}
