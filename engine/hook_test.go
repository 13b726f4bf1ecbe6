package engine_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// failures collects what the error handler is given.
type failures struct {
	mu   sync.Mutex
	list []*engine.Failure
}

func (f *failures) handler(_ context.Context, x *engine.Failure) {
	f.mu.Lock()
	f.list = append(f.list, x)
	f.mu.Unlock()
}

func (f *failures) take() []*engine.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.list
	f.list = nil
	return out
}

// The hook fires exactly once for a request that failed after three attempts, through the typed
// helpers and through the raw client alike, with the final status, the attempts and the typed error;
// the raw caller still reads the whole error body.
func TestErrorHookFiresOncePerFailedRequest(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	var got failures
	e := newEngine(t, srv, srv.Login("ada"), engine.WithErrorHandler(got.handler),
		engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond}))
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)

	_, err := engine.GetJSON[item](context.Background(), e, "/items/1?token=shh")
	var ae *engine.APIError
	require.ErrorAs(t, err, &ae)
	list := got.take()
	require.Len(t, list, 1)
	f := list[0]
	assert.Equal(t, http.MethodGet, f.Method)
	assert.Equal(t, srv.URL()+"/items/1?token=redacted", f.URL)
	assert.Equal(t, http.StatusServiceUnavailable, f.Status)
	assert.Equal(t, 3, f.Attempts)
	assert.Same(t, ae, errAsAPI(t, f.Err), "the hook and the caller see the same typed error")
	assert.Equal(t, "injected failure", ae.Message)

	resp, err := e.Client().Get(srv.URL() + "/items/1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, string(body), "injected failure", "the raw caller reads the whole body the hook parsed")
	list = got.take()
	require.Len(t, list, 1)
	assert.Equal(t, 3, list[0].Attempts)
	assert.Equal(t, "injected failure", errAsAPI(t, list[0].Err).Message)
}

func errAsAPI(t *testing.T, err error) *engine.APIError {
	t.Helper()
	var ae *engine.APIError
	require.ErrorAs(t, err, &ae)
	return ae
}

// Never for a success after retries, never for a cancellation the caller asked for; a network
// failure is reported with ErrNetwork.
func TestErrorHookSkipsSuccessesAndCancellations(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	var got failures
	e := newEngine(t, srv, srv.Login("ada"), engine.WithErrorHandler(got.handler),
		engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: time.Millisecond}))

	srv.SetAPIFailure(http.StatusBadGateway, "", 2)
	_, err := engine.GetJSON[item](context.Background(), e, "/items/1")
	require.NoError(t, err)
	resp, err := e.Client().Get(srv.URL() + "/items/1")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, got.take(), "a success after retries is not a failure")

	srv.SetAPIFailure(http.StatusServiceUnavailable, "30", -1)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.ErrorIs(t, err, context.Canceled)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/items/1", nil)
	_, err = e.Client().Do(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, got.take(), "a cancellation the caller asked for is not reported")

	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, err = engine.GetJSON[item](context.Background(), e, deadURL+"/x")
	require.ErrorIs(t, err, engine.ErrNetwork)
	list := got.take()
	require.Len(t, list, 1)
	assert.ErrorIs(t, list[0].Err, engine.ErrNetwork)
	assert.Zero(t, list[0].Status)
	assert.Equal(t, 4, list[0].Attempts, "a refused connection is retried: 1 + 3")
}

// A panicking hook is logged and does not change what the caller gets.
func TestPanickingErrorHook(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusForbidden)
	}))
	defer api.Close()
	e, err := engine.NewPublic(engine.WithBaseURL(api.URL), engine.WithErrorHandler(func(context.Context, *engine.Failure) {
		panic("toast service down")
	}))
	require.NoError(t, err)
	defer closeEngine(t, e)
	_, err = engine.GetJSON[item](context.Background(), e, "/x")
	var ae *engine.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, http.StatusForbidden, ae.Status)
	assert.Equal(t, "nope", ae.Message)
	resp, err := e.Client().Get(api.URL + "/x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.False(t, errors.Is(err, engine.ErrRequestPanicked))
}

// stallingAPI answers every request with status, a few bytes of its body, and then nothing until
// release is called (or the test ends); then it sends the rest.
func stallingAPI(t *testing.T, status int, first, rest string) (url string, release func()) {
	t.Helper()
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-released:
			_, _ = io.WriteString(w, rest)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return srv.URL, release
}

// An error answer whose body sends 7 bytes and stalls: the error handler (raw client) and the typed
// helper both get their *APIError, made from the 7 bytes, long before the caller's deadline, and
// the raw caller still reads the whole body once the server sends the rest.
func TestStallingErrorBodyDoesNotHoldTheAnswer(t *testing.T) {
	const deadline = 5 * time.Second
	for _, via := range []string{"raw client with an error handler", "typed helper"} {
		t.Run(via, func(t *testing.T) {
			url, release := stallingAPI(t, http.StatusUnprocessableEntity, "stalled", " and more")
			var got failures
			e, err := engine.NewPublic(engine.WithBaseURL(url), engine.WithErrorHandler(got.handler))
			require.NoError(t, err)
			defer closeEngine(t, e)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()

			if via == "typed helper" {
				_, err := engine.GetJSON[item](ctx, e, "/items/1")
				require.NoError(t, ctx.Err(), "the helper returned only at the caller's deadline")
				var ae *engine.APIError
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, "stalled", ae.Message)
				assert.Len(t, got.take(), 1)
				return
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/items/1", nil)
			require.NoError(t, err)
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.NoError(t, ctx.Err(), "RoundTrip returned only at the caller's deadline")
			list := got.take()
			require.Len(t, list, 1)
			assert.Equal(t, http.StatusUnprocessableEntity, list[0].Status)
			assert.Equal(t, "stalled", errAsAPI(t, list[0].Err).Message)

			release()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "stalled and more", string(body), "the caller reads the whole body")
		})
	}
}

// A raw caller that closes a stalled error body without reading it: Close ends the read the engine
// left running, and nothing is left behind (goleak checks at the end of the package's tests).
func TestClosingAStalledErrorBody(t *testing.T) {
	url, _ := stallingAPI(t, http.StatusServiceUnavailable, "wait", "")
	var got failures
	e, err := engine.NewPublic(engine.WithBaseURL(url), engine.WithErrorHandler(got.handler), engine.WithMaxRetries(0))
	require.NoError(t, err)
	defer closeEngine(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/x", nil)
	require.NoError(t, err)
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	require.NoError(t, ctx.Err())
	require.NoError(t, resp.Body.Close())
	_, err = resp.Body.Read(make([]byte, 1))
	assert.Error(t, err, "a closed body reads nothing")
	require.Len(t, got.take(), 1)
}
