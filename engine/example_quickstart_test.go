package engine_test

// The quick start of README.md is the code below, from its import block to the end of
// Example_quickStart; TestReadmeQuickStart keeps the two identical. This first import block
// belongs to that test alone, so that the reader's copy needs nothing the example does not use.
import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"

	"github.com/resilientclient/resilient/engine"
)

// A hundred goroutines call an API with an access token it no longer accepts: the engine refreshes
// once, resends each request with the new token, and every caller gets its answer.
func Example_quickStart() {
	// A tiny API for this example: GET /items/{id} wants the current access token, and
	// POST /oauth/token hands out a new one (an OAuth2 refresh, RFC 6749 §6).
	var (
		mu        sync.Mutex
		current   = "access-0"
		refreshes atomic.Int32
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		n := refreshes.Add(1)
		mu.Lock()
		current = fmt.Sprintf("access-%d", n)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"access-%d","refresh_token":"refresh-%d","token_type":"Bearer","expires_in":3600}`, n, n)
	})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := r.Header.Get("Authorization") == "Bearer "+current
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.PathValue("id") == "0" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"title":"Not Found","status":404,"detail":"no item 0"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"widget"}`, r.PathValue("id"))
	})
	api := httptest.NewServer(mux)
	defer api.Close()

	// The engine: where the API is, how to refresh, and the tokens to start with.
	eng, err := engine.New(
		engine.WithBaseURL(api.URL), // only this origin ever receives the token
		engine.WithTokenEndpoint(api.URL+"/oauth/token", engine.OAuth2Refresh),
		engine.WithTokens(engine.Tokens{Access: "expired", Refresh: "refresh-0"}),
	)
	if err != nil {
		fmt.Println(err) // bad options: errors.Is(err, engine.ErrInvalidConfig)
		return
	}
	defer eng.Close(context.Background())

	type Item struct{ ID, Name string } // JSON fields match names case-insensitively
	var wg sync.WaitGroup
	var answered atomic.Int32
	for i := range 100 {
		wg.Go(func() {
			item, err := engine.GetJSON[Item](context.Background(), eng, fmt.Sprintf("/items/%d", i+1))
			if err == nil && item.Name == "widget" {
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("answered:", answered.Load(), "refresh calls:", refreshes.Load())

	// An error answer comes back as *engine.APIError, parsed from problem+json, JSON or text.
	_, err = engine.GetJSON[Item](context.Background(), eng, "/items/0")
	var apiErr *engine.APIError
	if errors.As(err, &apiErr) {
		fmt.Println("error:", apiErr.Status, apiErr.Message)
	}

	// Any code that takes an *http.Client gets all of this by using the engine's.
	resp, err := eng.Client().Get(api.URL + "/items/7")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("client:", resp.StatusCode)
	// Output:
	// answered: 100 refresh calls: 1
	// error: 404 no item 0
	// client: 200
}

// TestReadmeQuickStart fails when README.md's quick start and Example_quickStart drift apart: the
// README's first go block after "## Quick start", without its package line, must appear verbatim
// in this file.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	self, err := os.ReadFile("example_quickstart_test.go")
	require.NoError(t, err)

	_, section, found := bytes.Cut(readme, []byte("\n## Quick start\n"))
	require.True(t, found, `README.md has no "## Quick start" section`)
	_, block, found := bytes.Cut(section, []byte("```go\n"))
	require.True(t, found, "the quick start has no go block")
	block, _, found = bytes.Cut(block, []byte("```\n"))
	require.True(t, found, "the quick start's go block is not closed")
	if first, rest, ok := bytes.Cut(block, []byte("\n")); ok && bytes.HasPrefix(first, []byte("package ")) {
		block = bytes.TrimLeft(rest, "\n")
	}

	require.Contains(t, string(block), "func Example_quickStart()", "the block is not the example")
	assert.True(t, bytes.Contains(self, block),
		"README.md's quick start is not a verbatim copy of Example_quickStart and its imports:\n%s", block)
}
