package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The demo's acts check themselves; here they run smaller, and their report must say so.
func TestDemoActs(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(int, *bytes.Buffer) bool
	}{
		{"herd", func(n int, w *bytes.Buffer) bool { return herdAct(n, w) }},
		{"expiry", func(n int, w *bytes.Buffer) bool { return expiryAct(n, w) }},
		{"proactive", func(n int, w *bytes.Buffer) bool { return proactiveAct(n, w) }},
		{"outage", func(n int, w *bytes.Buffer) bool { return outageAct(n, w) }},
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
