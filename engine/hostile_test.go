package engine_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// hostileAllocBound is how much a request may allocate, whatever the size of what the server sends.
const hostileAllocBound = 16 << 20

// allocatedBy runs f and returns the bytes the whole process allocated meanwhile (the server's
// handler and the engine's goroutines included), after a GC so that earlier garbage is not counted.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hostileEngine builds a public or an authenticated engine for base, closed after the test.
func hostileEngine(t *testing.T, base string, public bool, opts ...engine.Option) *engine.Engine {
	t.Helper()
	opts = append([]engine.Option{engine.WithBaseURL(base)}, opts...)
	var e *engine.Engine
	var err error
	if public {
		e, err = engine.NewPublic(opts...)
	} else {
		e, err = engine.New(append(opts, engine.WithTokens(engine.Tokens{Access: "access-token"}))...)
	}
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	return e
}

// A caller reading a 64 MiB answer through the engine streams it: the request allocates a small,
// fixed amount, not the body, with or without an ETag (the ETag cache gives up its copy at its entry
// limit, 1 MiB by default, or does not start one when Content-Length says the body is larger).
func TestHostileBigBodyIsStreamed(t *testing.T) {
	const size = 64 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB
	for _, tc := range []struct {
		name          string
		etag          bool
		contentLength bool
	}{
		{"chunked", false, false},
		{"chunked with ETag", true, false},
		{"Content-Length with ETag", true, true},
	} {
		for _, public := range []bool{true, false} {
			name := tc.name + ", authenticated engine"
			if public {
				name = tc.name + ", public engine"
			}
			t.Run(name, func(t *testing.T) {
				s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.etag {
						w.Header().Set("ETag", `"big-v1"`)
					}
					if tc.contentLength {
						w.Header().Set("Content-Length", strconv.Itoa(size))
					}
					w.Header().Set("Content-Type", "application/octet-stream")
					for sent := 0; sent < size; sent += len(chunk) {
						if _, err := w.Write(chunk); err != nil {
							return
						}
					}
				}))
				t.Cleanup(s.Close)
				e := hostileEngine(t, s.URL, public)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/big", nil)
				require.NoError(t, err)

				var n int64
				alloc := allocatedBy(func() {
					resp, err := e.Client().Do(req)
					require.NoError(t, err)
					defer resp.Body.Close()
					require.Equal(t, http.StatusOK, resp.StatusCode)
					n, err = io.Copy(io.Discard, resp.Body)
					require.NoError(t, err)
				})
				t.Logf("read %d bytes, allocated %.2f MiB", n, float64(alloc)/(1<<20))
				assert.Equal(t, int64(size), n)
				assert.Less(t, alloc, uint64(hostileAllocBound), "bytes allocated while reading 64 MiB")
			})
		}
	}
}

// An error answer with a 10 MiB body: the typed helper returns its *APIError promptly, reading at
// most WithMaxErrorBodyBytes (1 MiB by default) of it, with a short Message.
func TestHostileHugeErrorBodyIsClipped(t *testing.T) {
	const size = 10 << 20
	for _, tc := range []struct {
		contentType string
		body        []byte
	}{
		{"text/plain", bytes.Repeat([]byte("x"), size)},
		{"application/json", []byte(`{"message":"` + strings.Repeat("x", size) + `"}`)},
		{"application/problem+json", []byte(`{"title":"boom","detail":"` + strings.Repeat("x", size) + `"}`)},
	} {
		t.Run(tc.contentType, func(t *testing.T) {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusInternalServerError)
				for rest := tc.body; len(rest) > 0; {
					k := min(len(rest), 32<<10)
					if _, err := w.Write(rest[:k]); err != nil {
						return
					}
					rest = rest[k:]
				}
			}))
			t.Cleanup(s.Close)
			e := hostileEngine(t, s.URL, false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			var err error
			var took time.Duration
			alloc := allocatedBy(func() {
				start := time.Now()
				_, err = engine.GetJSON[item](ctx, e, "/huge")
				took = time.Since(start)
			})
			var ae *engine.APIError
			require.ErrorAs(t, err, &ae)
			t.Logf("took %v, allocated %.2f MiB, message of %d bytes", took, float64(alloc)/(1<<20), len(ae.Message))
			assert.Equal(t, http.StatusInternalServerError, ae.Status)
			assert.NotEmpty(t, ae.Message)
			assert.LessOrEqual(t, len(ae.Message), 1024, "the message is clipped")
			assert.Less(t, len(err.Error()), 2048, "the error text is short")
			assert.Less(t, took, 5*time.Second)
			assert.Less(t, alloc, uint64(hostileAllocBound), "bytes allocated while failing")
		})
	}
}

// An answer whose body never ends (its first KiB, then nothing until the client leaves), with no
// retries and a 512-byte error body limit. For an error answer the typed helper returns the
// *APIError within about 2 s, since the parser stops at the limit, and the raw client hands the
// answer on just as fast, its body still readable from the start. For a success answer the typed
// helper returns the decoded value as soon as the JSON value is complete, whatever follows it.
func TestHostileEndlessBodyStopsAtTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		raw    bool
		first  []byte // what the server sends before it stalls
	}{
		{"error answer, typed helper", http.StatusServiceUnavailable, false, bytes.Repeat([]byte("e"), 1<<10)},
		{"error answer, raw client", http.StatusServiceUnavailable, true, bytes.Repeat([]byte("e"), 1<<10)},
		{"success answer, typed helper", http.StatusOK, false, append([]byte(`{"id":"1","name":"one","owner":"ada"}`), bytes.Repeat([]byte(" "), 1<<10)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := make(chan struct{})
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				if tc.status == http.StatusOK {
					w.Header().Set("Content-Type", "application/json")
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write(tc.first)
				w.(http.Flusher).Flush()
				select { // the rest never comes
				case <-r.Context().Done():
				case <-stop:
				}
			}))
			t.Cleanup(s.Close)
			t.Cleanup(func() { close(stop) }) // before s.Close: frees a handler whose client is still there
			var failures []*engine.Failure
			e := hostileEngine(t, s.URL, false, engine.WithMaxErrorBodyBytes(512),
				engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: -1}),
				engine.WithErrorHandler(func(_ context.Context, f *engine.Failure) { failures = append(failures, f) }))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			start := time.Now()
			switch {
			case tc.raw:
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/endless", nil)
				require.NoError(t, err)
				resp, err := e.Client().Do(req)
				took := time.Since(start)
				require.NoError(t, err)
				defer resp.Body.Close()
				assert.Equal(t, tc.status, resp.StatusCode)
				assert.Less(t, took, 2*time.Second, "the answer reached the caller")
				first := make([]byte, len(tc.first))
				_, err = io.ReadFull(resp.Body, first)
				require.NoError(t, err, "the caller still reads the body from its start")
				assert.Equal(t, tc.first, first)
			case tc.status == http.StatusOK:
				got, err := engine.GetJSON[item](ctx, e, "/endless")
				took := time.Since(start)
				assert.NoError(t, err)
				assert.Equal(t, item{ID: "1", Name: "one", Owner: "ada"}, got)
				assert.Less(t, took, 2*time.Second,
					"GetJSON took %v: it waited for more of a body that never ends after the decoded value (until the caller's context ended at 5 s)", took)
				assert.NoError(t, ctx.Err(), "GetJSON returned before the caller's context ended")
			default:
				_, err := engine.GetJSON[item](ctx, e, "/endless")
				took := time.Since(start)
				var ae *engine.APIError
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, tc.status, ae.Status)
				assert.LessOrEqual(t, len(ae.Message), 520, "at most the 512-byte limit, clipped")
				assert.Less(t, took, 2*time.Second,
					"GetJSON took %v: it waited for more of an error body that never ends (until the caller's context ended at 5 s)", took)
				assert.NoError(t, ctx.Err(), "GetJSON returned before the caller's context ended")
			}
			if tc.status == http.StatusOK {
				assert.Empty(t, failures)
				return
			}
			require.Len(t, failures, 1)
			var ae *engine.APIError
			require.ErrorAs(t, failures[0].Err, &ae)
			assert.Equal(t, tc.status, ae.Status)
		})
	}
}

// The JSON refresh format's token endpoint streams 64 MiB of unterminated JSON: the refresh fails
// fast, reading no more than the token answer limit; the refresh failed, the session stays. (The OAuth2 format is
// TestGarbageTokenAnswerFailsFastWithBoundedMemory.)
func TestHostileGarbageJSONRefreshFailsFastWithBoundedMemory(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"), engine.WithTokenEndpoint(srv.JSONRefreshURL(), engine.JSONRefresh))
	srv.SetTokenGarbage(64 << 20)
	srv.ExpireAccessTokens()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	var err error
	var took time.Duration
	alloc := allocatedBy(func() {
		start := time.Now()
		_, err = engine.GetJSON[item](ctx, e, "/items/1")
		took = time.Since(start)
	})
	t.Logf("took %v, allocated %.2f MiB", took, float64(alloc)/(1<<20))
	require.ErrorIs(t, err, engine.ErrRefreshFailed)
	assert.ErrorIs(t, err, engine.ErrMalformedTokenAnswer)
	assert.Less(t, took, 2*time.Second)
	assert.Less(t, alloc, uint64(hostileAllocBound), "bytes allocated while failing")
}
