package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startAPI runs a fake API for the test and stops it afterwards.
func startAPI(t testing.TB, opts fakeapi.Options) *fakeapi.Server {
	t.Helper()
	s := fakeapi.Start(opts)
	t.Cleanup(s.Close)
	return s
}

// newEngine builds an engine on srv with an OAuth2 token endpoint and tokens, closing it after the test
// (before the server stops) and checking that no actor is left.
func newEngine(t testing.TB, srv *fakeapi.Server, tokens engine.Tokens, opts ...engine.Option) *engine.Engine {
	t.Helper()
	all := append([]engine.Option{
		engine.WithBaseURL(srv.URL()),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(tokens),
	}, opts...)
	e, err := engine.New(all...)
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

func closeEngine(t testing.TB, e *engine.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, e.Close(ctx))
	require.Equal(t, 0, engine.ActorCount(e), "actors left after Close")
}

// item is what the fake API's GET /items/{id} answers.
type item struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// fanOut runs f(i) for i in [0, n) on n goroutines at once and waits for all of them.
func fanOut(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// eventLog collects events from a subscription.
type eventLog struct {
	mu     sync.Mutex
	events []engine.Event
}

func subscribe(e *engine.Engine) *eventLog {
	l := &eventLog{}
	e.Subscribe(func(ev engine.Event) {
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
	})
	return l
}

func (l *eventLog) count(match func(engine.Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if match(ev) {
			n++
		}
	}
	return n
}

func isRefreshed(ev engine.Event) bool { _, ok := ev.(*engine.TokenRefreshed); return ok }
func isExpired(ev engine.Event) bool   { _, ok := ev.(*engine.SessionExpired); return ok }

func sprintf(format string, v any) string { return fmt.Sprintf(format, v) }
