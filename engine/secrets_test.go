package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// The secrets that the application must never see again once it has handed them to the engine.
const (
	leakHeaderName  = "X-Api-Key"
	leakHeaderValue = "key-SECRET-123"
	leakQuerySecret = "QUERY-SECRET"
)

// leakCapture is everything the application can see of an engine: its log records, the errors its
// callers get, the failures given to the error handler, the events of a subscription, and whatever
// the application prints of its own credentials. All of it is searched for secrets afterwards.
type leakCapture struct {
	mu sync.Mutex // guards every field

	logs strings.Builder // the engine's log records, one JSON object a line
	seen strings.Builder // errors, failures, events, printed tokens, error bodies
	// rawURLErrors holds the texts of the *url.Error values http.Client wraps raw-client errors in.
	// net/http quotes the caller's own URL there, query included; the engine cannot redact it (see
	// checkLeaks), so these texts are searched for every secret but the query secret.
	rawURLErrors strings.Builder

	logRecords, callerErrors, failures, events int
}

// Write receives the slog handler's records (one Write per record).
func (c *leakCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logRecords++
	return c.logs.Write(p)
}

func (c *leakCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// failure is the error handler.
func (c *leakCapture) failure(_ context.Context, f *engine.Failure) {
	text := fmt.Sprintf("failure: %v\n%+v\n%#v\n%s\n", f, f, f, f.URL) + leakErrorText(f.Err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures++
	c.seen.WriteString(text)
}

// event is the subscriber.
func (c *leakCapture) event(ev engine.Event) {
	text := fmt.Sprintf("event: %v\n%+v\n%#v\n", ev, ev, ev)
	if se, ok := ev.(*engine.SessionExpired); ok {
		text += leakErrorText(se.Err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	c.seen.WriteString(text)
}

// callerError records what a caller got back; a *url.Error from the raw client is split into the
// caller's own URL (kept apart) and the engine's error it wraps.
func (c *leakCapture) callerError(err error) {
	if err == nil {
		return
	}
	var ue *url.Error
	text, raw := leakErrorText(err), ""
	if errors.As(err, &ue) {
		text = "raw client error: " + ue.Op + "\n" + leakErrorText(ue.Err)
		raw = leakErrorText(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.callerErrors++
	c.seen.WriteString(text)
	c.rawURLErrors.WriteString(raw)
}

// body records what a raw caller reads of an answer.
func (c *leakCapture) body(resp *http.Response) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	c.print("body: %d %s\n", resp.StatusCode, b)
}

// tokens prints a credential pair the way an application might, with every verb.
func (c *leakCapture) tokens(t engine.Tokens) {
	c.print("tokens: %v %+v %#v %s %q %v\n", t, t, t, t, t, struct{ T engine.Tokens }{t})
}

func (c *leakCapture) print(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen.WriteString(text)
}

// leakErrorText prints err and everything it wraps with %v, %+v and %#v, so that a secret in a
// field that no Error method shows is found too.
func leakErrorText(err error) string {
	var b strings.Builder
	var walk func(err error, depth int)
	walk = func(err error, depth int) {
		if err == nil || depth > 16 {
			return
		}
		fmt.Fprintf(&b, "error: %v\n%+v\n%#v\n", err, err, err)
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), depth+1)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, depth+1)
			}
		}
	}
	walk(err, 0)
	return b.String()
}

// leakNeedles turns issued tokens into what to search for: the first 16 characters of each token's
// random part (the signature of a JWT-like token, its header and payload are not secret), so that a
// token cut short by clipping is found as well as a whole one.
func leakNeedles(tokens []string) map[string]string {
	needles := map[string]string{}
	for i, tok := range tokens {
		random := tok[strings.LastIndexByte(tok, '.')+1:]
		kind := "access"
		if i%2 == 1 {
			kind = "refresh"
		}
		needles[random[:min(16, len(random))]] = fmt.Sprintf("%s token #%d", kind, i/2)
	}
	return needles
}

// findLeaks describes every needle found in text, showing where.
func findLeaks(text string, needles map[string]string) []string {
	var found []string
	for needle, what := range needles {
		if i := strings.Index(text, needle); i >= 0 {
			from, to := max(0, i-160), min(len(text), i+len(needle)+40)
			found = append(found, fmt.Sprintf("%s: ...%s...", what, text[from:to]))
		}
	}
	return found
}

// checkLeaks fails t for every needle found in text.
func checkLeaks(t *testing.T, where, text string, needles map[string]string) {
	t.Helper()
	for _, leak := range findLeaks(text, needles) {
		t.Errorf("leaked into the %s: %s", where, leak)
	}
}

// leakLoad runs n concurrent callers, each sending two requests of a kind picked by its number:
// typed helpers and the raw client, with and without a secret in the query, GETs and POSTs.
func leakLoad(e *engine.Engine, srv *fakeapi.Server, c *leakCapture, n int) {
	fanOut(n, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for j := range 2 {
			id := i*2 + j
			switch i % 6 {
			case 0:
				_, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d", id))
				c.callerError(err)
			case 1:
				_, err := engine.GetJSON[item](ctx, e, fmt.Sprintf("/items/%d?api_key=%s", id, leakQuerySecret))
				c.callerError(err)
			case 2:
				_, err := engine.PostJSON[json.RawMessage](ctx, e, "/orders", map[string]any{"sku": id})
				c.callerError(err)
			case 3:
				_, err := engine.PostJSON[json.RawMessage](ctx, e, fmt.Sprintf("/echo?api_key=%s", leakQuerySecret), map[string]any{"n": id})
				c.callerError(err)
			case 4:
				leakRawGet(ctx, e, c, fmt.Sprintf("%s/items/%d?api_key=%s", srv.URL(), id, leakQuerySecret))
			case 5:
				leakRawGet(ctx, e, c, srv.URL()+"/me")
			}
		}
	})
}

func leakRawGet(ctx context.Context, e *engine.Engine, c *leakCapture, u string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		panic(err)
	}
	resp, err := e.Client().Do(req)
	if err != nil {
		c.callerError(err)
		return
	}
	c.body(resp)
}

// expireWhile makes the server expire every access token every few milliseconds while f runs, so
// that refreshes rotate both tokens under load.
func expireWhile(srv *fakeapi.Server, f func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(15 * time.Millisecond)
		defer tick.Stop()
		for range 5 {
			srv.ExpireAccessTokens()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
}

// Under load, through token rotations, retried and failed requests, two session ends and new
// sign-ins, nothing the application can see (log records at Debug, callers' errors printed every
// way, error bodies, the error handler's failures, events, printed Tokens) contains any access or
// refresh token the server issued, the secret header's value, or a secret from a URL's query.
func TestSecretsNeverLeak(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opaque bool
		json   bool
	}{
		{"JWT tokens, OAuth2 refresh", false, false},
		{"opaque tokens, JSON refresh", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: tc.opaque, AccessTTL: time.Hour})
			var c leakCapture
			first := srv.Login("ada")
			c.tokens(first)
			opts := []engine.Option{
				engine.WithLogger(c.logger()),
				engine.WithErrorHandler(c.failure),
				engine.WithSecretHeader(leakHeaderName, leakHeaderValue),
				engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}),
			}
			if tc.json {
				opts = append(opts, engine.WithTokenEndpoint(srv.JSONRefreshURL(), engine.JSONRefresh))
			}
			e := newEngine(t, srv, first, opts...)
			e.Subscribe(c.event)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// 1. Tokens rotate under load.
			for range 2 {
				expireWhile(srv, func() { leakLoad(e, srv, &c, 300) })
			}

			// 2. The API fails for a while (retried 503s, some beyond the retries or the budget) and
			// loses the answers of orders it created.
			srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)
			leakLoad(e, srv, &c, 60)
			srv.SetAPIFailure(http.StatusServiceUnavailable, "", 150)
			srv.SetOrderLoss(20)
			expireWhile(srv, func() { leakLoad(e, srv, &c, 300) })
			srv.SetAPIFailure(0, "", 0)
			srv.SetOrderLoss(0)

			// 3. The token endpoint ends the session; the user signs in again.
			srv.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant","error_description":"refresh token revoked"}`, -1)
			srv.ExpireAccessTokens()
			leakLoad(e, srv, &c, 120)
			srv.SetTokenFailure(0, "", 0)
			again := srv.Login("ada")
			c.tokens(again)
			require.NoError(t, e.SetTokens(ctx, again))
			expireWhile(srv, func() { leakLoad(e, srv, &c, 120) })

			// 4. The token endpoint ends the session again, echoing the refresh token it refuses
			// (the last one issued: the engine's current one, as nothing runs now).
			issued := srv.IssuedTokens()
			current := issued[len(issued)-1]
			srv.SetTokenFailure(http.StatusBadRequest, fmt.Sprintf(
				`{"error":"invalid_grant","error_description":"refresh token %s is revoked","message":"refresh token %s is revoked"}`, current, current), 1)
			srv.ExpireAccessTokens()
			leakLoad(e, srv, &c, 60)
			srv.SetTokenFailure(0, "", 0)
			last := srv.Login("ada")
			c.tokens(last)
			require.NoError(t, e.SetTokens(ctx, last))
			leakLoad(e, srv, &c, 60)

			closeEngine(t, e) // delivers the queued events; nothing is logged after this

			needles := leakNeedles(srv.IssuedTokens())
			require.Len(t, needles, len(srv.IssuedTokens()), "issued tokens have distinct random parts")
			require.Len(t, findLeaks(first.Access+" "+last.Refresh, needles), 2, "the search finds tokens")
			needles[leakHeaderValue] = "the secret header's value"
			c.mu.Lock()
			defer c.mu.Unlock()
			logs, seen, raw := c.logs.String(), c.seen.String(), c.rawURLErrors.String()
			checkLeaks(t, "raw client's *url.Error", raw, needles)
			needles[leakQuerySecret] = "the query secret"
			checkLeaks(t, "engine's log", logs, needles)
			checkLeaks(t, "errors, failures, events or printed values", seen, needles)

			// The capture saw what it had to see, so the checks above could fail.
			st := srv.Stats()
			t.Logf("captured: %d log records (%d bytes), %d caller errors, %d failures, %d events, %d bytes in all; server: %+v, %d tokens issued",
				c.logRecords, len(logs), c.callerErrors, c.failures, c.events, len(seen)+len(logs)+len(raw), st, len(srv.IssuedTokens()))
			assert.GreaterOrEqual(t, st.RefreshCalls, int64(6), "tokens rotated")
			assert.Positive(t, c.logRecords)
			assert.True(t, strings.Contains(logs, "session expired"), "the session ends are logged")
			assert.True(t, strings.Contains(logs, "invalid_grant"), "the session ends are logged with their cause")
			assert.GreaterOrEqual(t, c.callerErrors, 100)
			assert.GreaterOrEqual(t, c.failures, 100)
			assert.Positive(t, c.events)
			for _, want := range []string{
				"api_key=redacted",    // failures and errors of URLs with a query secret
				"invalid_grant",       // the session ends
				"[redacted]",          // the echoed refresh token, replaced
				"Service Unavailable", // the API's failures
				"TokenRefreshed", "SessionExpired", "TokensReplaced", "RetryScheduled",
				"Access: set", // printed tokens
			} {
				assert.True(t, strings.Contains(seen, want), "the capture has no %q", want)
			}
			assert.True(t, strings.Contains(raw, leakQuerySecret),
				"net/http quotes the caller's URL in a *url.Error; if it no longer does, check these texts for the query secret too")
		})
	}
}

// A token endpoint that refuses a refresh and quotes the refresh token in its error fields: wherever
// the token stands in them, no part of it reaches the caller's error, the session-expired event or
// the log. (The engine clips the fields, to 64 bytes for the code and 256 for the description; a
// token that straddles the clip must not survive as a prefix.)
func TestSecretsNeverLeakFromAnEchoingTokenEndpoint(t *testing.T) {
	filler := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name string
		body func(refresh string) string
	}{
		{"description quotes the token", func(r string) string {
			return `{"error":"invalid_grant","error_description":"refresh token ` + r + ` is revoked"}`
		}},
		{"message quotes the token", func(r string) string {
			return `{"message":"refresh token ` + r + ` is revoked"}`
		}},
		{"code is the token", func(r string) string {
			return `{"error":"` + r + `"}`
		}},
		{"token straddles the description's clip", func(r string) string {
			return `{"error":"invalid_grant","error_description":"` + filler(230) + r + `"}`
		}},
		{"token straddles the message's clip", func(r string) string {
			return `{"message":"` + filler(230) + r + `"}`
		}},
		{"token straddles the code's clip", func(r string) string {
			return `{"error":"` + filler(30) + r + `"}`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startAPI(t, fakeapi.Options{Opaque: true, AccessTTL: time.Hour})
			var c leakCapture
			tokens := srv.Login("ada")
			e := newEngine(t, srv, tokens, engine.WithLogger(c.logger()), engine.WithErrorHandler(c.failure))
			e.Subscribe(c.event)
			srv.SetTokenFailure(http.StatusBadRequest, tc.body(tokens.Refresh), 1)
			srv.ExpireAccessTokens()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := engine.GetJSON[item](ctx, e, "/items/1")
			// Only invalid_grant ends the session; the other answers fail the refresh.
			require.True(t, errors.Is(err, engine.ErrSessionExpired) || errors.Is(err, engine.ErrRefreshFailed), "%v", err)
			c.callerError(err)
			closeEngine(t, e)

			needles := leakNeedles(srv.IssuedTokens())
			require.Len(t, findLeaks(tc.body(tokens.Refresh), needles), 1, "the search finds the echoed token")
			c.mu.Lock()
			defer c.mu.Unlock()
			if errors.Is(err, engine.ErrSessionExpired) {
				require.Equal(t, 1, c.events, "one SessionExpired event")
			}
			require.Positive(t, c.logRecords)
			checkLeaks(t, "caller's error, failure or event", c.seen.String(), needles)
			checkLeaks(t, "engine's log", c.logs.String(), needles)
		})
	}
}

// An API that echoes the credentials it was sent into its error answers, in every place the engine
// reads one from (problem title, detail and extension members, JSON message and code, a text body):
// the *APIError the caller and the error handler get shows none of them, while the raw caller's
// body stays the server's own. A secret shorter than redact's minimum is left as it is, so a
// short value cannot garble a message.
func TestAPIErrorsAreScrubbedOfEchoedSecrets(t *testing.T) {
	const access = "at-0123456789abcdef-SECRET"
	for _, tc := range []struct {
		name, ctype string
		body        func(auth, key string) string
		wantMessage string // with the long secret header value
	}{
		{"problem detail and title", "application/problem+json", func(auth, key string) string {
			return `{"title":"Rejected ` + auth + `","detail":"key ` + key + ` and token ` + strings.TrimPrefix(auth, "Bearer ") + ` refused","status":403}`
		}, "key [redacted] and token [redacted] refused"},
		{"problem extension member", "application/problem+json", func(auth, key string) string {
			return `{"title":"Forbidden","detail":"no","sent":{"authorization":"` + auth + `","key":"` + key + `"}}`
		}, "no"},
		{"JSON message and code", "application/json", func(auth, key string) string {
			return `{"code":"` + key + `","message":"you sent ` + auth + `"}`
		}, "you sent [redacted]"},
		{"text body", "text/plain", func(auth, key string) string {
			return "denied: " + auth + " / " + key
		}, "denied: [redacted] / [redacted]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, key := range []string{leakHeaderValue, "k-7"} {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", tc.ctype)
					w.WriteHeader(http.StatusForbidden)
					_, _ = io.WriteString(w, tc.body(r.Header.Get("Authorization"), r.Header.Get(leakHeaderName)))
				}))
				var c leakCapture
				e, err := engine.New(engine.WithBaseURL(srv.URL), engine.WithTokens(engine.Tokens{Access: access}),
					engine.WithSecretHeader(leakHeaderName, key), engine.WithErrorHandler(c.failure))
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)

				_, err = engine.GetJSON[item](ctx, e, "/items/1")
				var ae *engine.APIError
				require.ErrorAs(t, err, &ae)
				c.callerError(err)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/raw", nil)
				resp, err := e.Client().Do(req)
				require.NoError(t, err)
				raw, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				cancel()
				closeEngine(t, e)
				srv.Close()

				assert.Contains(t, string(raw), access, "the raw caller's body is the server's")
				c.mu.Lock()
				seen := c.seen.String()
				c.mu.Unlock()
				assert.Equal(t, 2, c.failures)
				assert.NotContains(t, seen, access, "the access token reached an error")
				if key == leakHeaderValue {
					assert.NotContains(t, seen, key, "the secret header's value reached an error")
					assert.Equal(t, tc.wantMessage, ae.Message)
				}
				visible := ae.Error() + ae.Code
				if ae.Problem != nil {
					for k, v := range ae.Problem.Extensions {
						assert.True(t, json.Valid(v), "extension %s is still JSON", k)
						visible += string(v)
					}
				}
				assert.NotContains(t, visible, access)
				if key != leakHeaderValue {
					assert.Contains(t, visible, key, "a value that short is left alone")
				}
			}
		})
	}
}
