package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/resilientclient/resilient/engine"
)

// countingTransport wraps a RoundTripper and counts what goes through it, as otelhttp or a test
// recorder wrapping http.DefaultTransport would.
type countingTransport struct {
	next  http.RoundTripper
	calls atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

// A program that wrapped http.DefaultTransport can still build engines (New and NewPublic used to
// panic on an unchecked type assertion), and they send through a pool of their own, not through the
// wrapper. Not parallel: it swaps a global.
func TestNewWithWrappedDefaultTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	orig := http.DefaultTransport
	wrapped := &countingTransport{next: orig}
	http.DefaultTransport = wrapped
	t.Cleanup(func() { http.DefaultTransport = orig })

	for _, tc := range []struct {
		name string
		new  func(...engine.Option) (*engine.Engine, error)
		opts []engine.Option
	}{
		{"New", engine.New, []engine.Option{engine.WithTokens(engine.Tokens{Access: "a"})}},
		{"NewPublic", engine.NewPublic, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			require.NotPanics(t, func() {
				var err error
				e, err = tc.new(append(tc.opts, engine.WithBaseURL(srv.URL))...)
				require.NoError(t, err)
			})
			t.Cleanup(func() { closeEngine(t, e) })
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/x", nil)
			require.NoError(t, err)
			resp, err := e.Client().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Zero(t, wrapped.calls.Load(), "the engine sent through the program's wrapper of http.DefaultTransport")
		})
	}
}

// rtFunc is a RoundTripper made of a function, to give WithTransport a typed nil of a func kind.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// construct calls NewPublic or New.
func construct(public bool, opts ...engine.Option) (*engine.Engine, error) {
	if public {
		return engine.NewPublic(opts...)
	}
	return engine.New(opts...)
}

// build runs New (or NewPublic) without panicking and closes what it built.
func build(t *testing.T, public bool, opts ...engine.Option) error {
	t.Helper()
	var e *engine.Engine
	var err error
	require.NotPanics(t, func() { e, err = construct(public, opts...) })
	if err == nil {
		closeEngine(t, e)
	} else {
		assert.Nil(t, e)
	}
	return err
}

// requireConfigError checks that err is a *ConfigError naming option, and returns its text.
func requireConfigError(t *testing.T, err error, option string) string {
	t.Helper()
	require.ErrorIs(t, err, engine.ErrInvalidConfig)
	var ce *engine.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, option, ce.Option, "%v", err)
	return err.Error()
}

// Nil values that would only panic (or silently do nothing) later are rejected by New with a
// *ConfigError naming the option: a typed nil in an interface included.
func TestNilOptionValues(t *testing.T) {
	tokens := engine.WithTokens(engine.Tokens{Access: "a"})
	base := engine.WithBaseURL("http://127.0.0.1:1")
	for _, tc := range []struct {
		name   string
		public bool
		opt    engine.Option
		option string
	}{
		{"nil option", false, nil, "Option"},
		{"nil option, public", true, nil, "Option"},
		{"WithTransport(nil)", false, engine.WithTransport(nil), "WithTransport"},
		{"typed nil *http.Transport", false, engine.WithTransport((*http.Transport)(nil)), "WithTransport"},
		{"typed nil *http.Transport, public", true, engine.WithTransport((*http.Transport)(nil)), "WithTransport"},
		{"typed nil func RoundTripper", true, engine.WithTransport(rtFunc(nil)), "WithTransport"},
		{"WithRefreshFunc(nil)", false, engine.WithRefreshFunc(nil), "WithRefreshFunc"},
		{"WithTokenStore(nil)", false, engine.WithTokenStore(nil), "WithTokenStore"},
		{"typed nil *MemoryStore", false, engine.WithTokenStore((*engine.MemoryStore)(nil)), "WithTokenStore"},
		{"typed nil *sdktrace.TracerProvider", true, engine.WithTracerProvider((*sdktrace.TracerProvider)(nil)), "WithTracerProvider"},
		{"typed nil *sdkmetric.MeterProvider", true, engine.WithMeterProvider((*sdkmetric.MeterProvider)(nil)), "WithMeterProvider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []engine.Option{base, tc.opt}
			if !tc.public {
				opts = append(opts, tokens)
			}
			requireConfigError(t, build(t, tc.public, opts...), tc.option)
		})
	}
	for name, opt := range map[string]engine.Option{
		"WithLogger(nil) discards, as the default does":  engine.WithLogger(nil),
		"WithTracerProvider(nil) follows the global one": engine.WithTracerProvider(nil),
		"WithMeterProvider(nil) follows the global one":  engine.WithMeterProvider(nil),
		"WithPropagator(nil) follows the global one":     engine.WithPropagator(nil),
		"WithErrorHandler(nil) is no handler":            engine.WithErrorHandler(nil),
	} {
		t.Run(name, func(t *testing.T) {
			assert.NoError(t, build(t, false, base, tokens, opt))
		})
	}
}

// Every option's zero, negative and ordinary values: accepted when they mean something (zero means
// what the option says, a negative value is off where off exists), a *ConfigError naming the option
// when they cannot.
func TestOptionValues(t *testing.T) {
	const api = "http://127.0.0.1:1"
	rt := engine.RetryPolicy{}
	refresh := func(context.Context, engine.Tokens) (engine.Tokens, error) { return engine.Tokens{}, nil }
	for _, tc := range []struct {
		name   string
		public bool
		opts   []engine.Option
		option string // "" when New must succeed
	}{
		{"base URL", false, []engine.Option{engine.WithBaseURL(api)}, ""},
		{"base URL empty", false, []engine.Option{engine.WithBaseURL("")}, "WithBaseURL"},
		{"base URL empty, public", true, []engine.Option{engine.WithBaseURL("")}, "WithBaseURL"},
		{"base URL empty, then given", false, []engine.Option{engine.WithBaseURL(""), engine.WithBaseURL(api)}, ""},
		{"base URL relative", false, []engine.Option{engine.WithBaseURL("/api")}, "WithBaseURL"},
		{"base URL without host", false, []engine.Option{engine.WithBaseURL("http:///api")}, "WithBaseURL"},
		{"base URL ftp", false, []engine.Option{engine.WithBaseURL("ftp://api.test")}, "WithBaseURL"},
		{"base URL with control character", false, []engine.Option{engine.WithBaseURL("http://api.test/\x7f")}, "WithBaseURL"},
		{"base URL with user:password", false, []engine.Option{engine.WithBaseURL("https://ada:pw@api.test")}, "WithBaseURL"},
		{"origins none", false, []engine.Option{engine.WithBaseURL(api), engine.WithOrigins()}, ""},
		{"origins", false, []engine.Option{engine.WithBaseURL(api), engine.WithOrigins("https://eu.api.test")}, ""},
		{"origins empty", false, []engine.Option{engine.WithBaseURL(api), engine.WithOrigins("")}, "WithOrigins"},
		{"token endpoint", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint(api+"/token", engine.JSONRefresh)}, ""},
		{"token endpoint empty", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint("", engine.OAuth2Refresh)}, "WithTokenEndpoint"},
		{"token endpoint empty, public", true, []engine.Option{engine.WithTokenEndpoint("", engine.OAuth2Refresh)}, "WithTokenEndpoint"},
		{"token endpoint zero format", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint(api+"/token", 0)}, "WithTokenEndpoint"},
		{"token endpoint negative format", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint(api+"/token", -1)}, "WithTokenEndpoint"},
		{"token endpoint ftp", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint("ftp://id.test/token", engine.OAuth2Refresh)}, "WithTokenEndpoint"},
		{"token endpoint http for an https API", false, []engine.Option{engine.WithBaseURL("https://api.test"),
			engine.WithTokenEndpoint("http://id.test/token", engine.OAuth2Refresh)}, "WithTokenEndpoint"},
		{"token endpoint https for an http API", false, []engine.Option{engine.WithBaseURL(api),
			engine.WithTokenEndpoint("https://id.test/token", engine.OAuth2Refresh)}, ""},
		{"client auth", false, []engine.Option{engine.WithBaseURL(api), engine.WithTokenEndpoint(api+"/token", engine.OAuth2Refresh),
			engine.WithClientAuth("app", "s3cret")}, ""},
		{"client auth without token endpoint", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshFunc(refresh),
			engine.WithClientAuth("app", "s3cret")}, "WithClientAuth"},
		{"client auth empty ID", false, []engine.Option{engine.WithBaseURL(api), engine.WithClientAuth("", "s3cret")}, "WithClientAuth"},
		{"client auth empty secret", false, []engine.Option{engine.WithBaseURL(api), engine.WithClientAuth("app", "")}, "WithClientAuth"},
		{"tokens with a newline in the access token", false, []engine.Option{engine.WithBaseURL(api),
			engine.WithTokens(engine.Tokens{Access: "a\r\nX-Injected: 1"})}, "WithTokens"},
		{"tokens with a space in the access token", false, []engine.Option{engine.WithBaseURL(api),
			engine.WithTokens(engine.Tokens{Access: "two words"})}, "WithTokens"},
		{"tokens with a scheme that is no token", false, []engine.Option{engine.WithBaseURL(api),
			engine.WithTokens(engine.Tokens{Access: "abc", Type: "Bearer x"})}, "WithTokens"},
		{"refresh func", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshFunc(refresh)}, ""},
		{"refresh func and endpoint", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshFunc(refresh),
			engine.WithTokenEndpoint(api+"/token", engine.OAuth2Refresh)}, "WithRefreshFunc"},
		{"refresh timeout", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshTimeout(time.Nanosecond)}, ""},
		{"refresh timeout huge", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshTimeout(math.MaxInt64)}, ""},
		{"refresh timeout zero", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshTimeout(0)}, "WithRefreshTimeout"},
		{"refresh timeout negative", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshTimeout(-time.Second)}, "WithRefreshTimeout"},
		{"refresh skew zero", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshSkew(0)}, ""},
		{"refresh skew negative", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshSkew(-time.Second)}, ""},
		{"refresh skew huge", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshSkew(math.MaxInt64)}, ""},
		{"refresh skew most negative", false, []engine.Option{engine.WithBaseURL(api), engine.WithRefreshSkew(math.MinInt64)}, ""},
		{"max token bytes", false, []engine.Option{engine.WithBaseURL(api), engine.WithMaxTokenResponseBytes(1)}, ""},
		{"max token bytes zero", false, []engine.Option{engine.WithBaseURL(api), engine.WithMaxTokenResponseBytes(0)}, "WithMaxTokenResponseBytes"},
		{"max token bytes negative", false, []engine.Option{engine.WithBaseURL(api), engine.WithMaxTokenResponseBytes(-1)}, "WithMaxTokenResponseBytes"},
		{"max error bytes", true, []engine.Option{engine.WithMaxErrorBodyBytes(1)}, ""},
		{"max error bytes zero", true, []engine.Option{engine.WithMaxErrorBodyBytes(0)}, ""},
		{"max error bytes negative", true, []engine.Option{engine.WithMaxErrorBodyBytes(-1)}, "WithMaxErrorBodyBytes"},
		{"transport", true, []engine.Option{engine.WithTransport(http.DefaultTransport)}, ""},
		{"cache", true, []engine.Option{engine.WithCache(1 << 20)}, ""},
		{"cache huge", true, []engine.Option{engine.WithCache(math.MaxInt64)}, ""},
		{"cache zero", true, []engine.Option{engine.WithCache(0)}, ""},
		{"cache negative", true, []engine.Option{engine.WithCache(-1)}, ""},
		{"secret header", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("X-Api-Key", "k")}, ""},
		{"secret header empty name", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("", "k")}, "WithSecretHeader"},
		{"secret header bad name", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("X Api", "k")}, "WithSecretHeader"},
		{"secret header empty value", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("X-Api-Key", "")}, "WithSecretHeader"},
		{"secret header value with newline", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("X-Api-Key", "k\r\nX: y")}, "WithSecretHeader"},
		{"secret header twice", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("X-Api-Key", "k"),
			engine.WithSecretHeader("x-api-key", "l")}, "WithSecretHeader"},
		{"secret header Host", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("host", "k")}, "WithSecretHeader"},
		{"secret header Content-Length", true, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("Content-Length", "1")}, "WithSecretHeader"},
		{"secret header without base URL", true, []engine.Option{engine.WithSecretHeader("X-Api-Key", "k")}, "WithSecretHeader"},
		{"secret Authorization on New", false, []engine.Option{engine.WithBaseURL(api), engine.WithSecretHeader("Authorization", "k")}, "WithSecretHeader"},
		{"max retries", true, []engine.Option{engine.WithMaxRetries(5)}, ""},
		{"max retries zero", true, []engine.Option{engine.WithMaxRetries(0)}, ""},
		{"max retries negative", true, []engine.Option{engine.WithMaxRetries(-1)}, ""},
		{"retry policy zero", true, []engine.Option{engine.WithRetryPolicy(rt)}, ""},
		{"retry policy negative MaxRetries", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: -1})}, ""},
		{"retry policy negative budget", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{BudgetRatio: -1, BudgetPerSecond: -1})}, ""},
		{"retry policy negative delay", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: -1})}, "WithRetryPolicy"},
		{"retry policy negative window", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{BudgetWindow: -1})}, "WithRetryPolicy"},
		{"retry policy NaN ratio", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{BudgetRatio: math.NaN()})}, "WithRetryPolicy"},
		{"retry policy then max retries", true, []engine.Option{engine.WithRetryPolicy(rt), engine.WithMaxRetries(1)}, "WithMaxRetries"},
		{"max retries then retry policy", true, []engine.Option{engine.WithMaxRetries(1), engine.WithRetryPolicy(rt)}, "WithMaxRetries"},
		{"logger", true, []engine.Option{engine.WithLogger(slog.New(slog.DiscardHandler))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if !tc.public { // first, so that a row's own WithTokens replaces them
				opts = append([]engine.Option{engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r"})}, opts...)
			}
			err := build(t, tc.public, opts...)
			if tc.option == "" {
				assert.NoError(t, err)
				return
			}
			requireConfigError(t, err, tc.option)
		})
	}
}

// An option means what it says, and a zero RetryPolicy field takes its default: the number of
// attempts a 503 gets under each way of setting MaxRetries.
func TestRetryCountOptions(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	fast := time.Millisecond
	for _, tc := range []struct {
		name     string
		opts     []engine.Option
		attempts int64
	}{
		{"no option: DefaultMaxRetries", nil, 1 + engine.DefaultMaxRetries},
		{"WithMaxRetries(0): none", []engine.Option{engine.WithMaxRetries(0)}, 1},
		{"WithMaxRetries(-1): none", []engine.Option{engine.WithMaxRetries(-1)}, 1},
		{"WithMaxRetries(1)", []engine.Option{engine.WithMaxRetries(1)}, 2},
		{"RetryPolicy{}: the default", []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{BaseDelay: fast})}, 1 + engine.DefaultMaxRetries},
		{"RetryPolicy{MaxRetries: -1}: none", []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: -1, BaseDelay: fast})}, 1},
		{"RetryPolicy{MaxRetries: 5}", []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 5, BaseDelay: fast, MaxDelay: fast})}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.NewPublic(tc.opts...)
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			calls.Store(0)
			resp, err := e.Client().Get(srv.URL)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, tc.attempts, calls.Load())
		})
	}
}

// WithCache(0) is no cache, like a negative size; no option is the default cache. A cached engine
// revalidates the second GET with If-None-Match.
func TestCacheSizeOptions(t *testing.T) {
	var revalidations atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			revalidations.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte("body"))
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		opts   []engine.Option
		cached bool
	}{
		{"no option", nil, true},
		{"WithCache(1 MiB)", []engine.Option{engine.WithCache(1 << 20)}, true},
		{"WithCache(0)", []engine.Option{engine.WithCache(0)}, false},
		{"WithCache(-1)", []engine.Option{engine.WithCache(-1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.NewPublic(tc.opts...)
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			revalidations.Store(0)
			for range 2 {
				resp, err := e.Client().Get(srv.URL)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
			assert.Equal(t, tc.cached, revalidations.Load() == 1)
		})
	}
}

// WithMaxErrorBodyBytes(0) reads no error body: the *APIError has the status only.
func TestMaxErrorBodyOptions(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message":"quantity must be positive"}`))
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name    string
		opts    []engine.Option
		message string
	}{
		{"no option", nil, "quantity must be positive"},
		{"WithMaxErrorBodyBytes(0)", []engine.Option{engine.WithMaxErrorBodyBytes(0)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.NewPublic(tc.opts...)
			require.NoError(t, err)
			t.Cleanup(func() { closeEngine(t, e) })
			_, err = engine.GetJSON[map[string]any](context.Background(), e, srv.URL)
			var apiErr *engine.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, http.StatusBadRequest, apiErr.Status)
			assert.Equal(t, tc.message, apiErr.Message)
		})
	}
}

// Whatever strings a program passes to the URL and header options, New returns an engine or a
// *ConfigError, never panics, and never quotes the header's value or a URL's password.
func FuzzURLAndHeaderOptions(f *testing.F) {
	f.Add("http://127.0.0.1:1", "http://127.0.0.1:1/token", "https://eu.api.test", "X-Api-Key", "k")
	f.Add("https://ada:hunter2@api.test", "ftp://id.test", "", "X Key", "k\r\n")
	f.Add("/relative", "http://[::1", "http:///nohost", "", "")
	f.Add("https://api.test?key=pw", "http://id.test/token", "mailto:x@y", "Authorization", "pw")
	f.Fuzz(func(t *testing.T, base, endpoint, origin, name, value string) {
		const marker = "SECRETVALUE"
		opts := []engine.Option{
			engine.WithBaseURL(base), engine.WithTokenEndpoint(endpoint, engine.OAuth2Refresh),
			engine.WithOrigins(origin), engine.WithSecretHeader(name, marker+value),
			engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r"}),
		}
		var e *engine.Engine
		var err error
		require.NotPanics(t, func() { e, err = engine.New(opts...) })
		if err == nil {
			closeEngine(t, e)
			return
		}
		require.ErrorIs(t, err, engine.ErrInvalidConfig)
		var ce *engine.ConfigError
		require.ErrorAs(t, err, &ce)
		if !strings.Contains(base+endpoint+origin+name, marker) {
			assert.NotContains(t, err.Error(), marker, "the secret header's value is in the error")
		}
		if u, perr := url.Parse(base); perr == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && len(pw) >= 4 && !strings.Contains(endpoint+origin+name+"WithBaseURL", pw) {
				assert.NotContains(t, err.Error(), pw, "the base URL's password is in the error")
			}
		}
	})
}

// Absurd but meaningful values are accepted, and a request through such an engine is served: no
// panic and no overflow at request time.
func TestAbsurdValuesStillServe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	huge := time.Duration(math.MaxInt64)
	tokens := engine.Tokens{Access: "a", Refresh: "r", Expiry: time.Now().Add(time.Hour)}
	for _, tc := range []struct {
		name   string
		public bool
		opts   []engine.Option
	}{
		{"one-byte cache", true, []engine.Option{engine.WithCache(1)}},
		{"largest cache", true, []engine.Option{engine.WithCache(math.MaxInt64)}},
		{"largest error body", true, []engine.Option{engine.WithMaxErrorBodyBytes(math.MaxInt64)}},
		{"largest retry policy", true, []engine.Option{engine.WithRetryPolicy(engine.RetryPolicy{
			MaxRetries: math.MaxInt, BaseDelay: time.Nanosecond, MaxDelay: huge, MaxElapsed: huge, MaxRetryAfter: huge,
			AttemptTimeout: huge, BudgetRatio: math.Inf(1), BudgetPerSecond: math.MaxInt, BudgetWindow: huge,
		})}},
		{"largest retry count", true, []engine.Option{engine.WithMaxRetries(math.MaxInt)}},
		{"largest skew and timeout", false, []engine.Option{engine.WithRefreshSkew(huge), engine.WithRefreshTimeout(huge),
			engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh), engine.WithTokens(tokens)}},
		{"most negative skew", false, []engine.Option{engine.WithRefreshSkew(math.MinInt64),
			engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh), engine.WithTokens(tokens)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *engine.Engine
			require.NotPanics(t, func() {
				var err error
				e, err = construct(tc.public, append(tc.opts, engine.WithBaseURL(srv.URL))...)
				require.NoError(t, err)
			})
			t.Cleanup(func() { closeEngine(t, e) })
			for range 2 {
				resp, err := e.Client().Get(srv.URL + "/x")
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
		})
	}
}

// Whatever numbers a program passes to the numeric options and RetryPolicy, New returns an engine or
// a *ConfigError, never panics; an engine it returns serves a request.
func FuzzNumericOptions(f *testing.F) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		_, _ = w.Write([]byte("ok"))
	}))
	f.Cleanup(srv.Close)
	f.Add(int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), 0.0, 0)
	f.Add(int64(-1), int64(-1), int64(-1), int64(-1), int64(-1), int64(-1), -1.0, -1)
	f.Add(int64(math.MaxInt64), int64(math.MinInt64), int64(1), int64(1), int64(1), int64(math.MaxInt64), math.Inf(1), math.MaxInt)
	f.Fuzz(func(t *testing.T, timeout, skew, tokenBytes, errorBytes, cache, delay int64, ratio float64, retries int) {
		policy := engine.RetryPolicy{MaxRetries: retries, BaseDelay: time.Duration(delay), MaxDelay: time.Duration(delay) * 2,
			AttemptTimeout: time.Duration(delay), BudgetRatio: ratio, BudgetPerSecond: retries}
		opts := []engine.Option{
			engine.WithBaseURL(srv.URL), engine.WithTokens(engine.Tokens{Access: "a", Refresh: "r"}),
			engine.WithTokenEndpoint(srv.URL+"/token", engine.OAuth2Refresh),
			engine.WithRefreshTimeout(time.Duration(timeout)), engine.WithRefreshSkew(time.Duration(skew)),
			engine.WithMaxTokenResponseBytes(tokenBytes), engine.WithMaxErrorBodyBytes(errorBytes),
			engine.WithCache(cache), engine.WithRetryPolicy(policy),
		}
		var e *engine.Engine
		var err error
		require.NotPanics(t, func() { e, err = engine.New(opts...) })
		if err != nil {
			require.ErrorIs(t, err, engine.ErrInvalidConfig)
			var ce *engine.ConfigError
			require.ErrorAs(t, err, &ce)
			return
		}
		t.Cleanup(func() { closeEngine(t, e) })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
		require.NoError(t, err)
		require.NotPanics(t, func() {
			resp, err := e.Client().Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	})
}

// A typed helper given a bad or relative path says so without quoting its query, which may hold a
// key.
func TestTypedHelperPathErrorsQuoteNoQuery(t *testing.T) {
	e, err := engine.NewPublic()
	require.NoError(t, err)
	t.Cleanup(func() { closeEngine(t, e) })
	for _, tc := range []struct {
		name, path string
		config     bool
	}{
		{"bad escape", "/items/%zz?key=SECRET-KEY", false},
		{"control character", "/items/\x7f?key=SECRET-KEY", false},
		{"relative without a base URL", "/items/1?key=SECRET-KEY", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.GetJSON[map[string]any](context.Background(), e, tc.path)
			require.Error(t, err)
			assert.Equal(t, tc.config, errors.Is(err, engine.ErrInvalidConfig), "%v", err)
			assert.NotContains(t, err.Error(), "SECRET-KEY")
		})
	}
}
