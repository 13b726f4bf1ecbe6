package actors

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/resilientclient/resilient/messages"
)

func benchSystem(b *testing.B) (*actor.ActorSystem, *TokenHandle) {
	system := newSystem(nil)
	h, err := SpawnToken(system, TokenConfig{Store: seeded(messages.Tokens{Access: "t1", Expiry: time.Now().Add(time.Hour)})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = h.Stop(context.Background())
		system.Shutdown()
	})
	return system, h
}

// BenchmarkAcquire compares the two ways a request can get a valid token: the published snapshot
// (one atomic load) and a NeedToken message through the token actor's mailbox.
func BenchmarkAcquire(b *testing.B) {
	_, h := benchSystem(b)
	ctx := context.Background()
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.Acquire(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.AcquireByMessage(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkSpawnRequestActor is what a protoactor actor per logical request would cost before it did
// any work: spawn it, send it one request, wait for its answer, stop it.
func BenchmarkSpawnRequestActor(b *testing.B) {
	system, _ := benchSystem(b)
	props := actor.PropsFromFunc(func(c actor.Context) {
		if r, ok := c.Message().(chan struct{}); ok {
			r <- struct{}{}
		}
	})
	b.ReportAllocs()
	for b.Loop() {
		pid := system.Root.Spawn(props)
		done := make(chan struct{}, 1)
		system.Root.Send(pid, done)
		<-done
		system.Root.Stop(pid)
	}
}

// okTransport answers 200 with a small body, in memory.
type okTransport struct{}

func (okTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"id":"1"}`))}, nil
}

// waitTransport is okTransport that first waits on the request's context as net/http's transport
// does (it derives a context of its own and selects on Done).
type waitTransport struct{}

func (waitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
	}
	return okTransport{}.RoundTrip(req)
}

// BenchmarkRequester is the whole request path on the hot path (valid token, 200): on
// context.Background and on one cancellable context shared by every request (a worker pool's), with
// a transport that never looks at the context and with one that waits on it as net/http's does.
func BenchmarkRequester(b *testing.B) {
	_, h := benchSystem(b)
	origin, _ := ParseOrigin("http://api.test")
	shared, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		base http.RoundTripper
	}{
		{"background", context.Background(), okTransport{}},
		{"cancellable", shared, okTransport{}},
		{"background/waiting-transport", context.Background(), waitTransport{}},
		{"cancellable/waiting-transport", shared, waitTransport{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := &Requester{Base: tc.base, Token: h, Origins: []Origin{origin}, Inflight: &Inflight{}}
			req, _ := http.NewRequestWithContext(tc.ctx, http.MethodGet, "http://api.test/items/1", nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := r.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
	}
}
