// Command demo tells the engine's story against the in-process fake API, and checks it:
//
//  1. the access token expires under 1,000 concurrent requests: they all meet a 401 (the tokens are
//     opaque, so only the server knows), exactly one refresh runs, and all 1,000 succeed;
//  2. tokens that live one second, under steady traffic: refreshed ahead of expiry, no 401 at all;
//  3. the refresh token is revoked while 1,000 requests wait: all fail fast with ErrSessionExpired,
//     one SessionExpired event, and signing in again (SetTokens) brings the engine back;
//  4. the API goes down for a second under 200 workers: retries stay within the budget (attempts ÷
//     requests ≤ 1.25) and everyone succeeds afterwards; then the answers of 10 of 100 orders are
//     lost after the server created them: every order succeeds, and none is created twice;
//  5. one request, traced with OpenTelemetry: it parks behind a refresh, its first send meets a 503,
//     its retry succeeds; the demo prints its trace as a tree, and the refresh's trace it links to.
//
// It exits 0 when every act went as it should, 1 otherwise.
//
//	go run ./cmd/demo                 # the whole story
//	go run ./cmd/demo -requests 5000  # a bigger herd
//	go run ./cmd/demo -otlp-endpoint localhost:4318  # also send every span and metric to a collector
//
// With -base-url and -access-token it sends one GET to a real API instead (add -refresh-token and
// -token-endpoint for refreshes).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

func main() {
	requests := flag.Int("requests", 1000, "concurrent requests in acts 1 and 3 (1 to 20000)")
	baseURL := flag.String("base-url", "", "a real API's base URL; with -access-token, sends one GET there instead of the story")
	path := flag.String("path", "/", "the path to GET on the real API")
	access := flag.String("access-token", "", "access token for the real API")
	refresh := flag.String("refresh-token", "", "refresh token for the real API")
	endpoint := flag.String("token-endpoint", "", "the real API's token endpoint")
	format := flag.String("format", "oauth2", "refresh format of -token-endpoint: oauth2 or json")
	otlp := flag.String("otlp-endpoint", "", "host:port of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. localhost:4318); every act's spans and metrics go there too")
	flag.Parse()

	if *baseURL != "" {
		os.Exit(realAPI(*baseURL, *path, *access, *refresh, *endpoint, *format))
	}
	if *requests < 1 || *requests > 20000 {
		fmt.Fprintln(os.Stderr, "demo: -requests must be between 1 and 20000")
		os.Exit(2)
	}
	tel, err := startTelemetry(*otlp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: -otlp-endpoint:", err)
		os.Exit(2)
	}
	ok := true
	for _, act := range []func(int, io.Writer) bool{herdAct, proactiveAct, expiryAct, outageAct, traceAct(tel.spans)} {
		ok = act(*requests, os.Stdout) && ok
		fmt.Println()
	}
	tel.stop(os.Stdout)
	if !ok {
		fmt.Println("demo: the story went wrong (see the lines marked FAIL)")
		os.Exit(1)
	}
	fmt.Println("demo: every act went as it should")
}

// herdAct: the token expires under a herd of concurrent requests.
func herdAct(n int, w io.Writer) bool {
	fmt.Fprintf(w, "Act 1 — the token expires under %d concurrent requests\n", n)
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	srv.SetTokenDelay(20 * time.Millisecond) // a token endpoint of realistic speed
	srv.ExpireAccessTokens()                 // only the server knows: every request will meet a 401
	r := fire(e, n)
	st := srv.Stats()
	report(w, r, st, events)
	return check(w, "every request succeeded", r.ok == n, "%d of %d", r.ok, n) &&
		check(w, "exactly one refresh", st.RefreshCalls == 1, "%d refresh calls", st.RefreshCalls) &&
		check(w, "no token family revoked", st.Revocations == 0, "%d revocations", st.Revocations)
}

// proactiveAct: short-lived tokens under steady traffic are refreshed ahead of expiry.
func proactiveAct(_ int, w io.Writer) bool {
	fmt.Fprintln(w, "Act 2 — tokens live 1 s; 3 s of steady traffic from 8 goroutines")
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Second}) // JWTs: the engine reads exp
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := engine.GetJSON[map[string]any](ctx, e, "/items/1"); err == nil {
					ok.Add(1)
				} else if ctx.Err() == nil {
					failed.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	st := srv.Stats()
	fmt.Fprintf(w, "  requests: %d ok, %d failed; API 401s: %d; refreshes: %d (%d proactive)\n",
		ok.Load(), failed.Load(), st.Unauthorized, st.RefreshCalls, events.proactive())
	return check(w, "no request met a 401", st.Unauthorized == 0, "%d 401s", st.Unauthorized) &&
		check(w, "no request failed", failed.Load() == 0, "%d failed", failed.Load()) &&
		check(w, "refreshed ahead of expiry", st.RefreshCalls >= 2 && events.proactive() >= 2, "%d refreshes", st.RefreshCalls)
}

// expiryAct: the refresh token is revoked while requests wait for the refresh.
func expiryAct(n int, w io.Writer) bool {
	fmt.Fprintf(w, "Act 3 — the refresh token is revoked while %d requests wait\n", n)
	srv := fakeapi.Start(fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	srv.SetTokenDelay(50 * time.Millisecond)
	srv.SetTokenFailure(400, `{"error":"invalid_grant","error_description":"refresh token revoked"}`, -1)
	srv.ExpireAccessTokens()
	r := fire(e, n)
	st := srv.Stats()
	report(w, r, st, events)
	good := check(w, "every request failed with ErrSessionExpired", r.expired == n, "%d of %d", r.expired, n) &&
		check(w, "exactly one refresh call", st.RefreshCalls == 1, "%d", st.RefreshCalls) &&
		check(w, "all failed promptly", r.slowest < 2*time.Second, "slowest %v", r.slowest)
	time.Sleep(50 * time.Millisecond) // events are delivered on their own goroutine
	good = check(w, "one SessionExpired event", events.expired() == 1, "%d", events.expired()) && good

	srv.SetTokenFailure(0, "", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.SetTokens(ctx, srv.Login("ada")); err != nil {
		return check(w, "signing in again works", false, "%v", err)
	}
	_, err := engine.GetJSON[map[string]any](ctx, e, "/items/1")
	return check(w, "signing in again (SetTokens) brings the engine back", err == nil, "%v", err) && good
}

// outageAct: an outage under load, then orders whose answers are lost.
func outageAct(_ int, w io.Writer) bool {
	fmt.Fprintln(w, "Act 4 — the API answers 503 for 1 s under 200 workers; then 10 of 100 order answers are lost")
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)
	before := srv.Stats().APIRequests
	end := time.Now().Add(time.Second)
	var logical, failed atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				logical.Add(1)
				if _, err := engine.GetJSON[map[string]any](context.Background(), e, "/items/1"); err != nil {
					failed.Add(1)
				}
				time.Sleep(20 * time.Millisecond) // the worker's own pause before its next job
			}
		}()
	}
	wg.Wait()
	attempts := srv.Stats().APIRequests - before
	srv.SetAPIFailure(0, "", 0)
	amp := float64(attempts) / float64(max(logical.Load(), 1))
	fmt.Fprintf(w, "  outage: %d requests, %d attempts (×%.2f), %d retries, %d refused by the budget\n",
		logical.Load(), attempts, amp, events.retries(), events.refusals())
	after := fire(e, 200)
	good := check(w, "retries stayed within the budget", amp <= 1.25, "×%.2f", amp) &&
		check(w, "everyone succeeds once the API is back", after.ok == 200, "%d of 200", after.ok)

	// A fresh engine, so the outage's retries do not weigh on this story's budget.
	e2, _ := mustEngine(srv, srv.Login("bob"))
	defer closeEngine(e2)
	srv.SetOrderLoss(10)
	var orders sync.WaitGroup
	var placed atomic.Int64
	for i := range 100 {
		orders.Add(1)
		go func() {
			defer orders.Done()
			if _, err := engine.PostJSON[map[string]any](context.Background(), e2, "/orders", map[string]int{"item": i}); err == nil {
				placed.Add(1)
			}
		}()
	}
	orders.Wait()
	fmt.Fprintf(w, "  orders: %d placed by callers, %d created by the server\n", placed.Load(), srv.Orders())
	return check(w, "every order succeeded", placed.Load() == 100, "%d of 100", placed.Load()) &&
		check(w, "no order created twice (one Idempotency-Key per order, on every attempt)", srv.Orders() == 100, "%d created", srv.Orders()) && good
}

type results struct {
	ok, expired, other int
	p50, p99, slowest  time.Duration
	firstErr           error
}

// fire sends n GETs at once and gathers what came back.
func fire(e *engine.Engine, n int) results {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			_, errs[i] = engine.GetJSON[map[string]any](ctx, e, fmt.Sprintf("/items/%d", i))
			lat[i] = time.Since(t0)
		}()
	}
	close(start)
	wg.Wait()
	var r results
	for _, err := range errs {
		switch {
		case err == nil:
			r.ok++
		case errors.Is(err, engine.ErrSessionExpired):
			r.expired++
		default:
			r.other++
			if r.firstErr == nil {
				r.firstErr = err
			}
		}
	}
	slices.Sort(lat)
	r.p50, r.p99, r.slowest = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
	return r
}

func report(w io.Writer, r results, st fakeapi.Stats, ev *eventCounter) {
	fmt.Fprintf(w, "  requests: %d ok, %d session expired, %d other failures\n", r.ok, r.expired, r.other)
	if r.firstErr != nil {
		fmt.Fprintf(w, "  first other failure: %v\n", r.firstErr)
	}
	fmt.Fprintf(w, "  server: %d API calls, %d answered 401, %d refresh calls, %d revocations\n",
		st.APIRequests, st.Unauthorized, st.RefreshCalls, st.Revocations)
	fmt.Fprintf(w, "  latency: p50 %v, p99 %v, slowest %v\n", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.slowest.Round(time.Microsecond))
	fmt.Fprintf(w, "  events: %d TokenRefreshed, %d SessionExpired\n", ev.refreshed(), ev.expired())
}

func check(w io.Writer, what string, ok bool, format string, args ...any) bool {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	fmt.Fprintf(w, "  %s %s (%s)\n", mark, what, fmt.Sprintf(format, args...))
	return ok
}

// eventCounter counts the engine's events.
type eventCounter struct {
	mu                     sync.Mutex
	nRefreshed, nProactive int
	nExpired               int
	nRetries, nRefusals    int
}

func (c *eventCounter) on(ev engine.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev := ev.(type) {
	case *engine.TokenRefreshed:
		c.nRefreshed++
		if ev.Proactive {
			c.nProactive++
		}
	case *engine.SessionExpired:
		c.nExpired++
	case *engine.RetryScheduled:
		c.nRetries++
	case *engine.RetryBudgetExhausted:
		c.nRefusals++
	}
}

func (c *eventCounter) retries() int  { c.mu.Lock(); defer c.mu.Unlock(); return c.nRetries }
func (c *eventCounter) refusals() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nRefusals }

func (c *eventCounter) refreshed() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nRefreshed }
func (c *eventCounter) proactive() int { c.mu.Lock(); defer c.mu.Unlock(); return c.nProactive }
func (c *eventCounter) expired() int   { c.mu.Lock(); defer c.mu.Unlock(); return c.nExpired }

func mustEngine(srv *fakeapi.Server, t engine.Tokens) (*engine.Engine, *eventCounter) {
	e, err := engine.New(
		engine.WithBaseURL(srv.URL()),
		engine.WithTokenEndpoint(srv.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(t),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	c := &eventCounter{}
	e.Subscribe(c.on)
	return e, c
}

func closeEngine(e *engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo: close:", err)
	}
}

// realAPI sends one GET to a real API through the engine and prints the answer's status and size.
func realAPI(base, path, access, refresh, endpoint, format string) int {
	opts := []engine.Option{engine.WithBaseURL(base), engine.WithTokens(engine.Tokens{Access: access, Refresh: refresh})}
	if endpoint != "" {
		f := engine.OAuth2Refresh
		if format == "json" {
			f = engine.JSONRefresh
		}
		opts = append(opts, engine.WithTokenEndpoint(endpoint, f))
	}
	e, err := engine.New(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 2
	}
	defer closeEngine(e)
	e.Subscribe(func(ev engine.Event) { fmt.Printf("event: %T %+v\n", ev, ev) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := base + path
	req, err := newGet(ctx, u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 2
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	fmt.Printf("GET %s: %s, %d bytes\n", path, resp.Status, n)
	if resp.StatusCode >= 400 {
		return 1
	}
	return 0
}

func newGet(ctx context.Context, u string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
}
