package engine_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// The token endpoint refuses the refresh while 200 requests are parked: every one fails with
// ErrSessionExpired (wrapping the endpoint's answer) within 2 s, one refresh call, one event, and the
// next request fails fast without calling anybody.
func TestRefusedRefreshFailsEveryParkedRequest(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	events := subscribe(e)
	srv.SetTokenDelay(100 * time.Millisecond) // long enough for all 200 to park
	srv.SetTokenFailure(400, `{"error":"invalid_grant","error_description":"refresh token revoked"}`, -1)
	srv.ExpireAccessTokens()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var expired, other atomic.Int64
	var slowest atomic.Int64
	fanOut(200, func(i int) {
		_, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i))
		var te *engine.TokenEndpointError
		if errors.Is(err, engine.ErrSessionExpired) && errors.As(err, &te) && te.Code == "invalid_grant" {
			expired.Add(1)
		} else {
			other.Add(1)
		}
		d := int64(time.Since(start))
		for cur := slowest.Load(); d > cur && !slowest.CompareAndSwap(cur, d); cur = slowest.Load() {
		}
	})
	assert.Equal(t, int64(200), expired.Load())
	assert.Zero(t, other.Load())
	assert.Less(t, time.Duration(slowest.Load()), 2*time.Second)
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
	require.Eventually(t, func() bool { return events.count(isExpired) == 1 }, 2*time.Second, 5*time.Millisecond)

	// Later requests fail fast: no API call, no refresh call.
	before := srv.Stats()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	assert.Equal(t, before, srv.Stats())
	assert.Equal(t, 1, events.count(isExpired), "SessionExpired is published once")

	// New credentials end the expired state.
	srv.SetTokenFailure(0, "", 0)
	require.NoError(t, e.SetTokens(ctx, srv.Login("ada")))
	_, err = engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
}

// The token endpoint hangs; every caller gives up at its own 500 ms deadline, and Close abandons the
// refresh.
func TestHangingTokenEndpointCallersLeaveAtTheirDeadline(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"), engine.WithRefreshTimeout(time.Minute))
	srv.SetTokenHang(true)
	srv.ExpireAccessTokens()

	var late, notDeadline atomic.Int64
	fanOut(100, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i))
		if !errors.Is(err, context.DeadlineExceeded) {
			notDeadline.Add(1)
		}
		if time.Since(start) > 1500*time.Millisecond {
			late.Add(1)
		}
	})
	assert.Zero(t, notDeadline.Load(), "every caller ends with its deadline")
	assert.Zero(t, late.Load(), "every caller returns by about its deadline")
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
	srv.Close() // ends the hanging call, which Close would otherwise let finish until its deadline
}

// The request that triggered the refresh is cancelled at once: the refresh still completes, the
// others succeed, and the rotated refresh token is kept, so the next refresh is not taken for reuse.
func TestCancelledTriggerDoesNotCancelTheRefresh(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
	e := newEngine(t, srv, srv.Login("ada"))
	srv.SetTokenDelay(150 * time.Millisecond)
	srv.ExpireAccessTokens()

	trigger, cancelTrigger := context.WithCancel(context.Background())
	triggerErr := make(chan error, 1)
	go func() { _, err := engine.GetJSON[item](trigger, e, "/items/0"); triggerErr <- err }()
	require.Eventually(t, func() bool { return srv.Stats().RefreshCalls == 1 }, 5*time.Second, time.Millisecond)
	cancelTrigger()
	require.ErrorIs(t, <-triggerErr, context.Canceled)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var failed atomic.Int64
	fanOut(20, func(i int) {
		if _, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", i)); err != nil {
			failed.Add(1)
		}
	})
	assert.Zero(t, failed.Load())
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)

	// The next refresh uses the rotated refresh token: no reuse detected, no revocation.
	srv.SetTokenDelay(0)
	srv.ExpireAccessTokens()
	_, err := engine.GetJSON[item](ctx, e, "/items/1")
	require.NoError(t, err)
	st := srv.Stats()
	assert.Equal(t, int64(2), st.RefreshCalls)
	assert.Zero(t, st.ReuseDetected)
	assert.Zero(t, st.Revocations)
}

// 25 of 50 parked requests are cancelled: each returns within about 100 ms, the other 25 are
// unaffected, and the cancelled ones never reach the API.
func TestCancelledParkedRequestsLeaveAtOnce(t *testing.T) {
	srv := startAPI(t, fakeapi.Options{AccessTTL: time.Hour})
	tokens := srv.Login("ada")
	tokens.Expiry = time.Now().Add(-time.Second) // known expired: requests park without sending
	e := newEngine(t, srv, tokens, engine.WithRefreshSkew(-1))
	srv.SetTokenDelay(time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cancelled, succeeded, slow atomic.Int64
	fanOut(50, func(i int) {
		rctx := ctx
		var cancelledAt atomic.Int64
		if i%2 == 0 {
			c, stop := context.WithCancel(ctx)
			defer stop()
			time.AfterFunc(200*time.Millisecond, func() { // while parked: the refresh takes 1 s
				cancelledAt.Store(time.Now().UnixNano())
				stop()
			})
			rctx = c
		}
		_, err := engine.GetJSON[item](rctx, e, fmt.Sprintf("/items/%d", i))
		switch {
		case err == nil:
			succeeded.Add(1)
		case errors.Is(err, context.Canceled):
			cancelled.Add(1)
			if time.Since(time.Unix(0, cancelledAt.Load())) > 100*time.Millisecond {
				slow.Add(1)
			}
		}
	})
	assert.Zero(t, slow.Load(), "cancelled requests return within 100 ms of their cancellation")
	assert.Equal(t, int64(25), cancelled.Load())
	assert.Equal(t, int64(25), succeeded.Load())
	assert.Equal(t, int64(25), srv.Stats().APIRequests, "cancelled requests never reach the API")
	assert.Equal(t, int64(1), srv.Stats().RefreshCalls)
}

// APIError.Error shows an RFC 9457 problem's title and detail both, and neither twice.
func TestAPIErrorShowsTitleAndDetail(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body, want string
	}{
		{"title and detail", "application/problem+json", `{"title":"Out of stock","detail":"only 2 left","status":422}`,
			"422 Unprocessable Entity: Out of stock: only 2 left"},
		{"title only", "application/problem+json", `{"title":"Out of stock","status":422}`,
			"422 Unprocessable Entity: Out of stock"},
		{"about:blank title repeats the status", "application/problem+json", `{"type":"about:blank","title":"Unprocessable Entity","detail":"only 2 left"}`,
			"422 Unprocessable Entity: only 2 left"},
		{"JSON message", "application/json", `{"message":"only 2 left"}`, "422 Unprocessable Entity: only 2 left"},
		{"clipped at a rune boundary", "text/plain; charset=utf-8", strings.Repeat("é", 300),
			"422 Unprocessable Entity: " + strings.Repeat("é", 256) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(http.StatusUnprocessableEntity)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			e, err := engine.NewPublic(engine.WithBaseURL(srv.URL))
			require.NoError(t, err)
			defer closeEngine(t, e)
			_, err = engine.PostJSON[item](context.Background(), e, "/orders", map[string]int{"qty": 3})
			var ae *engine.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, "engine: POST "+srv.URL+"/orders: "+tc.want, err.Error())
			assert.True(t, utf8.ValidString(err.Error()))
		})
	}
}

// The error types that are aliases list their fields in their doc comments (go doc hides an alias's
// fields): every exported field must be listed, so the list cannot go stale.
func TestAliasedErrorDocsListEveryField(t *testing.T) {
	fset := token.NewFileSet()
	docs := map[string]string{}
	for _, file := range []string{"errors.go", "retry.go", "engine.go"} {
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		require.NoError(t, err)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE && g.Doc != nil {
				for _, spec := range g.Specs {
					docs[spec.(*ast.TypeSpec).Name.Name] = g.Doc.Text()
				}
			}
		}
	}
	for name, typ := range map[string]reflect.Type{
		"TokenEndpointError": reflect.TypeFor[engine.TokenEndpointError](),
		"RetryLaterError":    reflect.TypeFor[engine.RetryLaterError](),
		"Tokens":             reflect.TypeFor[engine.Tokens](),
	} {
		doc, ok := docs[name]
		require.True(t, ok, "no doc comment found for %s", name)
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() {
				assert.Regexp(t, `(?m)^\s+`+f.Name+`\s+`+regexp.QuoteMeta(f.Type.String())+`\b`, doc, "%s's doc does not list %s", name, f.Name)
			}
		}
	}
}
