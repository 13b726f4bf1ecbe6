package bench

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memTransport answers every request with a small 200 without touching the network, so the
// benchmark sees only the client's own cost.
type memTransport struct{}

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	h := http.Header{}
	if req.URL.Path == "/etag" {
		h.Set("ETag", `"1"`)
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(`{"id":"1"}`)),
		ContentLength: 10, Request: req,
	}, nil
}

func get(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

// BenchmarkHotPath: GET with a valid token answered 200, through a raw http.Client and through the
// engine's client on the same in-memory transport. The engine's added cost is the difference.
func BenchmarkHotPath(b *testing.B) {
	const url = "http://api.test/items/1"
	b.Run("raw", func(b *testing.B) {
		c := &http.Client{Transport: memTransport{}}
		b.ReportAllocs()
		for b.Loop() {
			get(b, c, url)
		}
	})
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "engine", true: "engine-cache-warm"}[warm]
		b.Run(name, func(b *testing.B) {
			e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(memTransport{}),
				engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}),
				engine.WithRefreshFunc(func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil }))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = e.Close(context.Background()) }()
			c := e.Client()
			if warm { // the ETag cache holds an answer for another URL: every GET now looks it up
				get(b, c, "http://api.test/etag")
			}
			b.ReportAllocs()
			for b.Loop() {
				get(b, c, url)
			}
		})
	}
}

// TestHotPathRuns keeps the benchmark's setup honest in ordinary test runs: the engine answers
// through the in-memory transport with the token attached.
func TestHotPathRuns(t *testing.T) {
	var seen string
	e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header.Get("Authorization")
		return memTransport{}.RoundTrip(r)
	})), engine.WithTokens(engine.Tokens{Access: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close(context.Background()) }()
	resp, err := e.Client().Get("http://api.test/items/1")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if seen != "Bearer a" || resp.StatusCode != 200 {
		t.Fatalf("status %d, Authorization %q", resp.StatusCode, seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newGet(url string) (*http.Request, error) { return http.NewRequest(http.MethodGet, url, nil) }
