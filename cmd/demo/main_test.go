package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo's acts check themselves; here they run smaller, and their report must say so.
func TestDemoActs(t *testing.T) {
	tel, err := startTelemetry("")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.stop(io.Discard)
	for _, tc := range []struct {
		name string
		act  func(int, *bytes.Buffer) bool
	}{
		{"herd", func(n int, w *bytes.Buffer) bool { return herdAct(n, w) }},
		{"expiry", func(n int, w *bytes.Buffer) bool { return expiryAct(n, w) }},
		{"proactive", func(n int, w *bytes.Buffer) bool { return proactiveAct(n, w) }},
		{"outage", func(n int, w *bytes.Buffer) bool { return outageAct(n, w) }},
		{"trace", func(n int, w *bytes.Buffer) bool { return traceAct(tel.spans)(n, w) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.name == "proactive" {
				t.Skip("runs for 3 s")
			}
			var out bytes.Buffer
			ok := tc.act(200, &out)
			assert.True(t, ok, out.String())
			assert.NotContains(t, out.String(), "FAIL")
		})
	}
}

// -otlp-endpoint sends spans and metrics over OTLP/HTTP: a loopback server standing in for a
// collector receives both.
func TestOTLPEndpoint(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if len(body) > 0 && r.Header.Get("Content-Type") == "application/x-protobuf" {
			got[r.URL.Path]++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	tel, err := startTelemetry(strings.TrimPrefix(collector.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	assert.True(t, traceAct(tel.spans)(1, &out), out.String())
	tel.stop(&out)
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, got["/v1/traces"], "spans reached the collector: %v\n%s", got, out.String())
	assert.Positive(t, got["/v1/metrics"], "metrics reached the collector: %v", got)
	assert.Contains(t, out.String(), "sent to")
}
