package retry

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range []string{
		"0", "1", "120", " 5 ", "\t7", "007", "-1", "+1", "1.5", "abc", "", " ",
		"9223372036", "9223372037", "99999999999999999999",
		"Fri, 15 Mar 2024 12:00:30 GMT", "Friday, 15-Mar-24 12:00:30 GMT", "Fri Mar 15 12:00:30 2024",
		"Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT",
	} {
		f.Add(v, int64(1_710_504_000)) // 2024-03-15T12:00:00Z
	}
	f.Add("30", int64(0))
	f.Add("Fri, 15 Mar 2024 12:00:30 GMT", int64(-62135596800)) // year 1

	f.Fuzz(func(t *testing.T, v string, unix int64) {
		now := time.Unix(unix, 0)
		d, ok := ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false; want 0 when not ok", v, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, a negative wait", v, d)
		}
		trimmed := strings.Trim(v, " \t")
		if trimmed == "" || strings.Trim(trimmed, "0123456789") != "" {
			return // an HTTP-date
		}
		// Delta-seconds: a whole number of seconds, that reads the same when written back.
		if d%time.Second != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, not whole seconds", v, d)
		}
		back := strconv.FormatInt(int64(d/time.Second), 10)
		if d2, ok2 := ParseRetryAfter(back, now); !ok2 || d2 != d {
			t.Fatalf("ParseRetryAfter(%q) = %v, but its round trip %q gives %v, %v", v, d, back, d2, ok2)
		}
		if n, err := strconv.ParseInt(trimmed, 10, 64); err == nil && n <= int64(maxWait/time.Second) && d != time.Duration(n)*time.Second {
			t.Fatalf("ParseRetryAfter(%q) = %v, want %ds", v, d, n)
		}
	})
}

func FuzzDecide(f *testing.F) {
	for _, status := range []int{0, 100, 200, 204, 301, 304, 400, 401, 404, 408, 409, 422, 429, 499, 500, 501, 502, 503, 504, 505, 599, 999, -1} {
		for _, method := range []string{"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", ""} {
			f.Add(status, method, "", false)
		}
		f.Add(status, "POST", "k-1", true)
		f.Add(status, "PATCH", "k-1", false)
	}
	f.Add(503, "get", "", false)
	f.Add(409, "PUT", " ", false)

	f.Fuzz(func(t *testing.T, status int, method, key string, retry500 bool) {
		req := &http.Request{Method: method, Header: http.Header{}}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		reason, again := Decider(retry500)(req, &http.Response{StatusCode: status, Request: req}, nil)
		switch {
		case again != (reason != ""):
			t.Fatalf("status %d %q key %q: reason %q with retry %v", status, method, key, reason, again)
		case !again:
			return
		case (method == http.MethodPost || method == http.MethodPatch) && key == "":
			t.Fatalf("retried a %s without an Idempotency-Key (status %d, reason %q)", method, status, reason)
		case !Idempotent(req):
			t.Fatalf("retried a request that is not idempotent: %q key %q status %d", method, key, status)
		case status < 400:
			t.Fatalf("retried status %d (%q)", status, reason)
		case status < 500 && status != http.StatusTooManyRequests && !(status == http.StatusConflict && key != ""):
			t.Fatalf("retried status %d (%q) for %q key %q", status, reason, method, key)
		case status == http.StatusInternalServerError && !retry500:
			t.Fatalf("retried a 500 without retry500")
		}
	})
}
