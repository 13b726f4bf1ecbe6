package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilientclient/resilient/engine"
)

// exampleAPI is a tiny API for the examples: it accepts only the newest access token and rotates
// tokens on every refresh, like a real OAuth2 server.
func exampleAPI() *httptest.Server {
	var mu sync.Mutex
	current := "access-1"
	n := 1
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		current = fmt.Sprintf("access-%d", n)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": current, "refresh_token": fmt.Sprintf("refresh-%d", n), "expires_in": 3600})
	})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := r.Header.Get("Authorization") == "Bearer "+current
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"id": r.PathValue("id"), "name": "widget"})
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no such thing"}`))
	})
	return httptest.NewServer(mux)
}

// exampleEngine is the engine of the package example, for the other examples.
func exampleEngine(api *httptest.Server) *engine.Engine {
	eng, err := engine.New(
		engine.WithBaseURL(api.URL),
		engine.WithTokenEndpoint(api.URL+"/oauth/token", engine.OAuth2Refresh),
		engine.WithTokens(engine.Tokens{Access: "stale", Refresh: "refresh-1"}),
	)
	if err != nil {
		panic(err)
	}
	return eng
}

// The engine starts with a token the API no longer accepts: the first request meets a 401, the
// engine refreshes once, resends, and the caller only sees the answer.
func Example() {
	api := exampleAPI()
	defer api.Close()

	eng, err := engine.New(
		engine.WithBaseURL(api.URL),
		engine.WithTokenEndpoint(api.URL+"/oauth/token", engine.OAuth2Refresh),
		engine.WithTokens(engine.Tokens{Access: "stale", Refresh: "refresh-1"}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(context.Background())

	type Item struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	item, err := engine.GetJSON[Item](context.Background(), eng, "/items/42")
	fmt.Println(item.ID, item.Name, err)
	// Output: 42 widget <nil>
}

// Any code that takes an *http.Client (or an http.RoundTripper) gets token handling by swapping in
// the engine's.
func ExampleEngine_Client() {
	api := exampleAPI()
	defer api.Close()
	eng := exampleEngine(api) // engine.New as in the package example
	defer eng.Close(context.Background())

	client := eng.Client() // or: &http.Client{Transport: eng.Transport()}
	resp, err := client.Get(api.URL + "/items/7")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 {"id":"7","name":"widget"}
}

// Subscribers hear about refreshes and about the end of the session, which is where an application
// asks the user to sign in again.
func ExampleEngine_Subscribe() {
	api := exampleAPI()
	defer api.Close()
	eng := exampleEngine(api) // engine.New as in the package example
	refreshed := make(chan *engine.TokenRefreshed, 1)
	unsubscribe := eng.Subscribe(func(ev engine.Event) {
		switch ev := ev.(type) {
		case *engine.TokenRefreshed:
			refreshed <- ev
		case *engine.SessionExpired:
			fmt.Println("please sign in again:", ev.Err)
		}
	})
	defer unsubscribe()
	defer eng.Close(context.Background())

	_, _ = engine.GetJSON[map[string]string](context.Background(), eng, "/items/1")
	ev := <-refreshed
	fmt.Println("refreshed to generation", ev.Generation, "proactive:", ev.Proactive)
	// Output: refreshed to generation 2 proactive: false
}

// Error answers come back as *APIError, parsed once from problem+json, JSON message fields or text.
func ExampleAPIError() {
	api := exampleAPI()
	defer api.Close()
	eng, err := engine.NewPublic(engine.WithBaseURL(api.URL))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(context.Background())

	_, err = engine.GetJSON[map[string]string](context.Background(), eng, "/missing")
	var apiErr *engine.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.Status, apiErr.Message, apiErr.Problem.Title)
	}
	// Output: 404 no such thing Not Found
}

// Bad options are reported by New, naming the option.
func ExampleNew_badConfiguration() {
	_, err := engine.New(engine.WithTokens(engine.Tokens{Access: "a"}))
	fmt.Println(errors.Is(err, engine.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// engine: invalid configuration: WithBaseURL: required: it names the API that receives the token
}

// An option means what it says: WithMaxRetries(0) is no retry. Giving both the whole retry policy
// and WithMaxRetries would leave one of them ignored, so New refuses the pair.
func ExampleWithMaxRetries() {
	eng, err := engine.NewPublic(engine.WithMaxRetries(0))
	fmt.Println(err)
	_ = eng.Close(context.Background())

	_, err = engine.NewPublic(engine.WithMaxRetries(1), engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Second}))
	fmt.Println(err)
	// Output:
	// <nil>
	// engine: invalid configuration: WithMaxRetries: given with WithRetryPolicy, which it would contradict; set RetryPolicy.MaxRetries instead
}

// The session's end is a typed error: check it with errors.Is and sign the user in again.
func ExampleEngine_SetTokens() {
	api := exampleAPI()
	defer api.Close()
	// No token endpoint: a rejected token cannot be refreshed, so the session ends.
	eng, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokens(engine.Tokens{Access: "stale"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err = engine.GetJSON[map[string]string](ctx, eng, "/items/1")
	fmt.Println(errors.Is(err, engine.ErrSessionExpired))
	// ... the user signs in again ...
	_ = eng.SetTokens(ctx, engine.Tokens{Access: "access-1"})
	item, err := engine.GetJSON[map[string]string](ctx, eng, "/items/1")
	fmt.Println(item["name"], err)
	// Output:
	// true
	// widget <nil>
}

// A retry policy: the zero RetryPolicy is the default one; set only what differs. Here a flaky
// endpoint answers 503 twice before it works, and the caller sees only the success; the events say
// what the engine did.
func ExampleWithRetryPolicy() {
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0") // the server lets us come back at once
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer api.Close()

	eng, err := engine.NewPublic(
		engine.WithBaseURL(api.URL),
		engine.WithRetryPolicy(engine.RetryPolicy{
			MaxRetries:     5,
			BaseDelay:      50 * time.Millisecond,
			AttemptTimeout: 2 * time.Second, // a stalled attempt is abandoned and retried
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	retries := make(chan *engine.RetryScheduled, 10)
	eng.Subscribe(func(ev engine.Event) {
		if r, ok := ev.(*engine.RetryScheduled); ok {
			retries <- r
		}
	})

	got, err := engine.GetJSON[map[string]string](context.Background(), eng, "/health")
	fmt.Println(got["status"], err)
	_ = eng.Close(context.Background()) // delivers the events already queued
	close(retries)
	for r := range retries {
		fmt.Println("attempt", r.Attempt, "after", r.Reason)
	}
	// Output:
	// ok <nil>
	// attempt 2 after status_503
	// attempt 3 after status_503
}

// The error handler is the one place where failures surface, once per failed request however many
// attempts it took: the place for a toast or a metric. Its Err is the typed error the caller gets.
func ExampleWithErrorHandler() {
	api := exampleAPI()
	defer api.Close()
	eng, err := engine.NewPublic(
		engine.WithBaseURL(api.URL),
		engine.WithErrorHandler(func(ctx context.Context, f *engine.Failure) {
			var apiErr *engine.APIError
			if errors.As(f.Err, &apiErr) {
				fmt.Printf("toast: %s (%d, after %d attempt)\n", apiErr.Message, f.Status, f.Attempts)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(context.Background())

	_, err = engine.GetJSON[map[string]string](context.Background(), eng, "/missing?api_key=secret")
	fmt.Println(strings.Replace(err.Error(), api.URL, "http://api", 1))
	// Output:
	// toast: no such thing (404, after 1 attempt)
	// engine: GET http://api/missing?api_key=redacted: 404 Not Found: no such thing
}

// Tracing with OpenTelemetry: give the engine a tracer provider (or install one globally) and every
// logical request becomes an INTERNAL span whose sends are CLIENT spans, named and attributed as
// otelhttp names them; a refresh is a span of its own that the requests it released link to.
func ExampleWithTracerProvider() {
	api := exampleAPI()
	defer api.Close()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	eng, err := engine.New(
		engine.WithBaseURL(api.URL),
		engine.WithTokenEndpoint(api.URL+"/oauth/token", engine.OAuth2Refresh),
		engine.WithTokens(engine.Tokens{Access: "stale", Refresh: "refresh-1"}),
		engine.WithTracerProvider(tp),
		engine.WithPropagator(propagation.TraceContext{}), // traceparent on every send
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(context.Background())

	if _, err := engine.GetJSON[map[string]string](context.Background(), eng, "/items/7"); err != nil {
		fmt.Println(err)
		return
	}
	_ = eng.Close(context.Background()) // every span has ended once the engine is closed
	names := []string{}
	for _, s := range spans.Ended() {
		names = append(names, s.SpanKind().String()+" "+s.Name())
	}
	slices.Sort(names)
	fmt.Println(strings.Join(names, "\n"))
	// Output:
	// client GET
	// client GET
	// client POST
	// internal resilient GET
	// internal token refresh
}
