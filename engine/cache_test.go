package engine_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// etagAPI serves /doc/{name} with a per-user body and an ETag that is the same for every user, and
// answers 304 to any matching If-None-Match whoever asks: a naive server that trusts the client's
// cache to keep users apart. It notes every If-None-Match it receives.
type etagAPI struct {
	*httptest.Server
	mu       sync.Mutex
	version  int
	inm      []string
	answered []int
}

func startETagAPI(t *testing.T, extra http.Header) *etagAPI {
	a := &etagAPI{version: 1}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if r.Method == http.MethodPut {
			a.version++
			w.WriteHeader(http.StatusNoContent)
			return
		}
		etag := `"v` + string(rune('0'+a.version)) + `"`
		a.inm = append(a.inm, r.Header.Get("If-None-Match"))
		for k, v := range extra {
			w.Header()[k] = v
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			a.answered = append(a.answered, http.StatusNotModified)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		a.answered = append(a.answered, http.StatusOK)
		w.Header().Set("Content-Type", "application/json")
		user := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		_, _ = io.WriteString(w, `{"owner":"`+user+`","path":"`+r.URL.Path+`"}`)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *etagAPI) seen() ([]string, []int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.inm...), append([]int(nil), a.answered...)
}

func getAs(t *testing.T, e *engine.Engine, url, user string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+user)
	}
	resp, err := e.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// The second GET of an ETagged resource asks If-None-Match; the server's 304 reaches the caller as
// the stored 200, same body, marked X-Cache: revalidated. Through the typed helpers too.
func TestETagRevalidation(t *testing.T) {
	api := startETagAPI(t, nil)
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithTokens(engine.Tokens{Access: "ada"}))
	require.NoError(t, err)
	defer closeEngine(t, e)

	first, body1 := getAs(t, e, api.URL+"/doc/a", "")
	second, body2 := getAs(t, e, api.URL+"/doc/a", "")
	assert.Equal(t, http.StatusOK, first.StatusCode)
	assert.Equal(t, http.StatusOK, second.StatusCode)
	assert.Equal(t, body1, body2)
	assert.Contains(t, body2, `"owner":"ada"`)
	assert.Empty(t, first.Header.Get("X-Cache"))
	assert.Equal(t, "revalidated", second.Header.Get("X-Cache"))

	doc, err := engine.GetJSON[map[string]string](context.Background(), e, "/doc/a")
	require.NoError(t, err)
	assert.Equal(t, "ada", doc["owner"])

	inm, answered := api.seen()
	assert.Equal(t, []string{"", `"v1"`, `"v1"`}, inm)
	assert.Equal(t, []int{200, 304, 304}, answered)
}

// Users A and B get identical ETags (and the server would answer 304 to either): each still sees
// only its own data, because entries are partitioned by the credentials that fetched them.
func TestETagCacheNeverMixesUsers(t *testing.T) {
	for _, vary := range []bool{true, false} {
		name := map[bool]string{true: "with Vary", false: "without Vary"}[vary]
		t.Run(name, func(t *testing.T) {
			extra := http.Header{}
			if vary {
				extra.Set("Vary", "Authorization")
			}
			api := startETagAPI(t, extra)
			e, err := engine.NewPublic() // one engine, one cache, two users' credentials
			require.NoError(t, err)
			defer closeEngine(t, e)

			_, a1 := getAs(t, e, api.URL+"/doc/x", "alice")
			_, b1 := getAs(t, e, api.URL+"/doc/x", "bob")
			_, a2 := getAs(t, e, api.URL+"/doc/x", "alice")
			_, b2 := getAs(t, e, api.URL+"/doc/x", "bob")
			for _, body := range []string{a1, a2} {
				assert.Contains(t, body, `"owner":"alice"`)
			}
			for _, body := range []string{b1, b2} {
				assert.Contains(t, body, `"owner":"bob"`)
			}
			inm, _ := api.seen()
			assert.Equal(t, []string{"", "", `"v1"`, `"v1"`}, inm, "bob's first GET must not use alice's entry")
		})
	}
}

// A write to a URL drops what is stored for it; no-store answers are never kept; a caller that sends
// its own validator gets the server's 304 as it is; WithCache(-1) turns caching off.
func TestETagCacheRules(t *testing.T) {
	t.Run("write invalidates", func(t *testing.T) {
		api := startETagAPI(t, nil)
		e, err := engine.NewPublic()
		require.NoError(t, err)
		defer closeEngine(t, e)
		getAs(t, e, api.URL+"/doc/w", "")
		req, _ := http.NewRequest(http.MethodPut, api.URL+"/doc/w", strings.NewReader(`{}`))
		resp, err := e.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		getAs(t, e, api.URL+"/doc/w", "")
		inm, _ := api.seen()
		assert.Equal(t, []string{"", ""}, inm)
	})
	t.Run("no-store", func(t *testing.T) {
		api := startETagAPI(t, http.Header{"Cache-Control": {"private, no-store"}})
		e, err := engine.NewPublic()
		require.NoError(t, err)
		defer closeEngine(t, e)
		getAs(t, e, api.URL+"/doc/n", "")
		getAs(t, e, api.URL+"/doc/n", "")
		inm, _ := api.seen()
		assert.Equal(t, []string{"", ""}, inm)
	})
	t.Run("caller's own validator", func(t *testing.T) {
		api := startETagAPI(t, nil)
		e, err := engine.NewPublic()
		require.NoError(t, err)
		defer closeEngine(t, e)
		getAs(t, e, api.URL+"/doc/c", "")
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/doc/c", nil)
		req.Header.Set("If-None-Match", `"v1"`)
		resp, err := e.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	})
	t.Run("off", func(t *testing.T) {
		api := startETagAPI(t, nil)
		e, err := engine.NewPublic(engine.WithCache(-1))
		require.NoError(t, err)
		defer closeEngine(t, e)
		getAs(t, e, api.URL+"/doc/o", "")
		getAs(t, e, api.URL+"/doc/o", "")
		inm, _ := api.seen()
		assert.Equal(t, []string{"", ""}, inm)
	})
}

// Credentials in headers spelled otherwise (net/http sends keys as written) still partition the
// cache: two users sharing an Authorization but not their lowercase "cookie" never see each other's data.
func TestETagCacheSeesEverySpellingOfCredentials(t *testing.T) {
	var mu sync.Mutex
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Vary", "Cookie")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "data of "+r.Header.Get("Cookie"))
	}))
	defer api.Close()
	e, err := engine.NewPublic()
	require.NoError(t, err)
	defer closeEngine(t, e)
	get := func(cookie string) string {
		req, _ := http.NewRequest(http.MethodGet, api.URL+"/doc", nil)
		req.Header.Set("Authorization", "Bearer shared")
		req.Header["cookie"] = []string{cookie}
		resp, err := e.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	assert.Equal(t, "data of session=alice", get("session=alice"))
	assert.Equal(t, "data of session=alice", get("session=alice"))
	assert.Equal(t, "data of session=bob", get("session=bob"))
}

// Every credential separates users, not only Authorization and Cookie: an API-key header the caller
// sets, and a header named by WithSecretHeader. The server answers 304 to a matching If-None-Match
// before it looks at who asks (as ETag middleware in front of auth does), so only the client's
// partitioning keeps one caller's body from another.
func TestETagCacheSeparatesEveryCredentialHeader(t *testing.T) {
	keyHeaders := []string{"X-Api-Key", "Api-Key", "X-Auth-Token", "Ocp-Apim-Subscription-Key", "X-Tenant-Key"}
	handler := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"one-for-all"`)
		if r.Header.Get("If-None-Match") == `"one-for-all"` {
			w.WriteHeader(http.StatusNotModified) // before auth: a 304 for whoever sends the tag
			return
		}
		who := ""
		for _, name := range keyHeaders {
			who += r.Header.Get(name)
		}
		if who == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "data of "+who)
	}
	api := httptest.NewServer(http.HandlerFunc(handler))
	defer api.Close()
	other := httptest.NewServer(http.HandlerFunc(handler))
	defer other.Close()
	get := func(t *testing.T, e *engine.Engine, url, name, key string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+"/me", nil)
		require.NoError(t, err)
		req.Header[name] = []string{key} // as written: net/http sends a lowercase key as it is
		resp, err := e.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}

	for _, tc := range []struct {
		name, url string
		opts      []engine.Option
	}{
		{"X-Api-Key", api.URL, nil},
		{"x-api-key", api.URL, nil},
		{"Api-Key", api.URL, nil},
		{"X-Auth-Token", api.URL, nil},
		{"Ocp-Apim-Subscription-Key", api.URL, nil},
		// The engine sends its secret to the API only; a caller may set the same header for another
		// origin, and the engine knows that name carries credentials.
		{"X-Tenant-Key", other.URL, []engine.Option{engine.WithBaseURL(api.URL), engine.WithSecretHeader("X-Tenant-Key", "engine-key")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := engine.NewPublic(tc.opts...)
			require.NoError(t, err)
			defer closeEngine(t, e)
			for range 2 {
				assert.Equal(t, "data of alice-key", get(t, e, tc.url, tc.name, "alice-key"))
				assert.Equal(t, "data of bob-key", get(t, e, tc.url, tc.name, "bob-key"))
			}
		})
	}
}

// etagTransport answers every GET in memory with a small 200 carrying an ETag, or a 304 when the
// request sends that ETag back: the engine's cached path without a network.
type etagTransport struct{}

func (etagTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Etag": {`"v1"`}}, Body: io.NopCloser(strings.NewReader(`{"id":"1"}`)),
		ContentLength: 10, Request: req}
	if req.Header.Get("If-None-Match") == `"v1"` {
		resp.StatusCode, resp.Body, resp.ContentLength = http.StatusNotModified, http.NoBody, 0
	}
	return resp, nil
}

// BenchmarkCachedGET is one GET of a stored resource with the engine's token: lookup, conditional
// send, 304, the stored 200 to the caller. For instruction counts, run it under callgrind with two
// -test.benchtime=Nx values and divide the difference.
func BenchmarkCachedGET(b *testing.B) {
	e, err := engine.New(engine.WithBaseURL("http://api.test"), engine.WithTransport(etagTransport{}),
		engine.WithTokens(engine.Tokens{Access: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2ln"}))
	require.NoError(b, err)
	defer closeEngine(b, e)
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, "http://api.test/doc", nil)
		resp, err := e.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	get() // stores it
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
}

// Two families of one engine share its cache but never each other's entries: the server gives both
// the same ETag, and each family still reads only its own body.
func TestETagCacheNeverMixesFamilies(t *testing.T) {
	api := startETagAPI(t, nil)
	store := &engine.MemoryFamilyStore{}
	require.NoError(t, store.Save(context.Background(), "a", engine.Tokens{Access: "alice"}))
	require.NoError(t, store.Save(context.Background(), "b", engine.Tokens{Access: "bob"}))
	e, err := engine.New(engine.WithBaseURL(api.URL), engine.WithFamilyStore(store))
	require.NoError(t, err)
	defer closeEngine(t, e)
	var bodies []string
	for _, key := range []string{"a", "b", "a", "b"} {
		f, err := e.Family(key)
		require.NoError(t, err)
		doc, err := engine.GetJSON[map[string]string](context.Background(), f, "/doc/x")
		require.NoError(t, err)
		bodies = append(bodies, doc["owner"])
	}
	assert.Equal(t, []string{"alice", "bob", "alice", "bob"}, bodies)
	inm, _ := api.seen()
	assert.Equal(t, []string{"", "", `"v1"`, `"v1"`}, inm, "b's first GET must not use a's entry")
}
