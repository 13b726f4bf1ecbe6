package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilientclient/resilient/engine"
)

// lockedBuffer is a bytes.Buffer safe for the logger's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

var errIdP = errors.New("identity provider down")

// A refresh function whose error quotes the tokens: the error the request gets, the log and the
// refresh span hold none of them, and errors.Is still finds the function's own error.
func TestRefreshFuncErrorsAreScrubbed(t *testing.T) {
	const access, refresh = "access-secret-4242", "refresh-secret-4242"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer api.Close()
	logs := &lockedBuffer{}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokens(engine.Tokens{Access: access, Refresh: refresh}),
		engine.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), engine.WithTracerProvider(tp),
		engine.WithRefreshFunc(func(ctx context.Context, cur engine.Tokens) (engine.Tokens, error) {
			return engine.Tokens{}, fmt.Errorf("refreshing %s with %s: %w", cur.Access, cur.Refresh, errIdP)
		}))
	require.NoError(t, err)
	defer closeEngine(t, e)

	_, err = fetchStatus(e, api.URL+"/x")
	require.Error(t, err)
	assert.ErrorIs(t, err, errIdP)
	assert.ErrorIs(t, err, engine.ErrRefreshFailed)
	seen := []string{err.Error(), logs.String()}
	for _, s := range spans.Ended() {
		seen = append(seen, s.Status().Description)
		for _, ev := range s.Events() {
			for _, a := range ev.Attributes {
				seen = append(seen, a.Value.Emit())
			}
		}
	}
	for _, text := range seen {
		assert.NotContains(t, text, access)
		assert.NotContains(t, text, refresh)
	}
	assert.Contains(t, err.Error(), "identity provider down", "the rest of the text stays")
}
