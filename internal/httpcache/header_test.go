package httpcache

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCacheControl(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []directive
	}{
		{"none", nil, nil},
		{"one", []string{"no-store"}, []directive{{"no-store", ""}}},
		{"case-insensitive names", []string{"No-Store, MAX-AGE=60"}, []directive{{"no-store", ""}, {"max-age", "60"}}},
		{"spaces and empty elements", []string{" , private ,, no-cache ,"}, []directive{{"private", ""}, {"no-cache", ""}}},
		{"quoted value with comma", []string{`private="Set-Cookie, X-Foo", no-store`},
			[]directive{{"private", "Set-Cookie, X-Foo"}, {"no-store", ""}}},
		{"escaped quote", []string{`ext="a\"b,c", max-age=1`}, []directive{{"ext", `a"b,c`}, {"max-age", "1"}}},
		{"unterminated quote runs to the end", []string{`ext="a, no-store`}, []directive{{"ext", "a, no-store"}}},
		{"junk after a quoted value", []string{`ext="a"junk, no-store`}, []directive{{"ext", "a"}, {"no-store", ""}}},
		{"several header lines", []string{"max-age=1", "no-store"}, []directive{{"max-age", "1"}, {"no-store", ""}}},
		{"spaces around =", []string{"max-age = 5"}, []directive{{"max-age", "5"}}},
		{"no-store as a value is not a directive", []string{"ext=no-store"}, []directive{{"ext", "no-store"}}},
		{"empty name", []string{"=5, no-store"}, []directive{{"no-store", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, parseCacheControl(tc.in))
		})
	}
}

func FuzzCacheControl(f *testing.F) {
	for _, seed := range []string{
		"no-store", `private="a,b", no-store`, `x="\"`, `x="`, "=,=", " , ", "MAX-AGE=1", `a="b\`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, d := range parseCacheControl([]string{v}) {
			assert.NotEmpty(t, d.name)
			assert.Equal(t, strings.ToLower(d.name), d.name)
			assert.NotContains(t, d.name, ",")
			assert.NotContains(t, d.name, "=")
			assert.Equal(t, trimOWS(d.name), d.name)
		}
	})
}

func TestVaryNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
		star bool
	}{
		{"none", nil, nil, false},
		{"canonicalised", []string{"accept-language"}, []string{"Accept-Language"}, false},
		{"list and lines, de-duplicated", []string{"Accept, accept-encoding", "ACCEPT"}, []string{"Accept", "Accept-Encoding"}, false},
		{"star", []string{"Accept, *"}, []string{"Accept"}, true},
		{"empty elements", []string{" , ,"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names, star := varyNames(http.Header{"Vary": tc.in})
			assert.Equal(t, tc.want, names)
			assert.Equal(t, tc.star, star)
		})
	}
}

func TestStorable(t *testing.T) {
	ok := func(h http.Header) http.Header {
		out := http.Header{"Etag": {`"v1"`}}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		method    string
		reqHeader http.Header
		host      string
		status    int
		header    http.Header
		want      bool
	}{
		{"GET 200 with ETag", "GET", nil, "", 200, ok(nil), true},
		{"empty method means GET", "", nil, "", 200, ok(nil), true},
		{"weak ETag", "GET", nil, "", 200, http.Header{"Etag": {`W/"v1"`}}, true},
		{"Last-Modified only", "GET", nil, "", 200, http.Header{"Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}}, true},
		{"private is fine", "GET", nil, "", 200, ok(http.Header{"Cache-Control": {"private, max-age=0"}}), true},
		{"no-cache is fine", "GET", nil, "", 200, ok(http.Header{"Cache-Control": {"no-cache"}}), true},
		{"Pragma no-cache is nothing special", "GET", nil, "", 200, ok(http.Header{"Pragma": {"no-cache"}}), true},
		{"Vary on Authorization", "GET", nil, "", 200, ok(http.Header{"Vary": {"Authorization"}}), true},
		{"request Host equal to the URL's", "GET", nil, "api.example", 200, ok(nil), true},
		{"no validator", "GET", nil, "", 200, http.Header{}, false},
		{"unquoted ETag", "GET", nil, "", 200, http.Header{"Etag": {"v1"}}, false},
		{"two ETags", "GET", nil, "", 200, http.Header{"Etag": {`"a"`, `"b"`}}, false},
		{"unparsable Last-Modified", "GET", nil, "", 200, http.Header{"Last-Modified": {"yesterday"}}, false},
		{"response no-store", "GET", nil, "", 200, ok(http.Header{"Cache-Control": {"max-age=5, No-Store"}}), false},
		{"no-store on a second line", "GET", nil, "", 200, ok(http.Header{"Cache-Control": {"private", "no-store"}}), false},
		{"request no-store", "GET", http.Header{"Cache-Control": {"no-store"}}, "", 200, ok(nil), false},
		{"Vary star", "GET", nil, "", 200, ok(http.Header{"Vary": {"Accept, *"}}), false},
		{"Vary on Proxy-Authorization", "GET", nil, "", 200, ok(http.Header{"Vary": {"proxy-authorization"}}), false},
		{"Set-Cookie", "GET", nil, "", 200, ok(http.Header{"Set-Cookie": {"s=1"}}), false},
		{"non-canonical set-cookie", "GET", nil, "", 200, ok(http.Header{"set-cookie": {"s=1"}}), false},
		{"HEAD", "HEAD", nil, "", 200, ok(nil), false},
		{"POST", "POST", nil, "", 200, ok(nil), false},
		{"206", "GET", nil, "", 206, ok(nil), false},
		{"404", "GET", nil, "", 404, ok(nil), false},
		{"request Host overrides the URL's", "GET", nil, "other.example", 200, ok(nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &http.Request{Method: tc.method, URL: mustURL(t, "https://api.example/doc"), Header: tc.reqHeader, Host: tc.host}
			resp := &http.Response{StatusCode: tc.status, Header: tc.header}
			assert.Equal(t, tc.want, Storable(req, resp))
		})
	}
	assert.False(t, Storable(nil, &http.Response{StatusCode: 200}))
	assert.False(t, Storable(&http.Request{URL: mustURL(t, "https://a/")}, nil))
}

func TestConditional(t *testing.T) {
	both := &Entry{ETag: `"v1"`, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT"}
	for _, tc := range []struct {
		name string
		in   http.Header
		e    *Entry
		want http.Header
	}{
		{"ETag wins", http.Header{}, both, http.Header{"If-None-Match": {`"v1"`}}},
		{"Last-Modified alone", http.Header{}, &Entry{LastModified: both.LastModified},
			http.Header{"If-Modified-Since": {both.LastModified}}},
		{"nil entry", http.Header{}, nil, http.Header{}},
		{"caller's If-None-Match kept", http.Header{"If-None-Match": {`"mine"`}}, both, http.Header{"If-None-Match": {`"mine"`}}},
		{"caller's If-Modified-Since kept", http.Header{"If-Modified-Since": {"x"}}, both, http.Header{"If-Modified-Since": {"x"}}},
		{"caller's If-Match kept", http.Header{"If-Match": {`"m"`}}, both, http.Header{"If-Match": {`"m"`}}},
		{"non-canonical caller header kept", http.Header{"if-none-match": {`"m"`}}, both, http.Header{"if-none-match": {`"m"`}}},
		{"Range left alone", http.Header{"Range": {"bytes=0-1"}}, both, http.Header{"Range": {"bytes=0-1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			Conditional(tc.in, tc.e)
			assert.Equal(t, tc.want, tc.in)
		})
	}
}

func TestUpdatedHeader(t *testing.T) {
	stored := http.Header{
		"Etag":             {`"v1"`},
		"Content-Length":   {"5"},
		"Content-Type":     {"text/plain"},
		"Content-Encoding": {"identity"},
		"Cache-Control":    {"max-age=1"},
		"Date":             {"old"},
		"X-Kept":           {"yes"},
	}
	notModified := http.Header{
		"Etag":           {`W/"v1"`},
		"Content-Length": {"0"},
		"Cache-Control":  {"max-age=60"},
		"Date":           {"new"},
		"Expires":        {"later"},
		"Vary":           {"Accept"},
		"Connection":     {"X-Hop"},
		"X-Hop":          {"1"},
		"Keep-Alive":     {"timeout=5"},
		"Set-Cookie":     {"s=1"},
		"x-lower":        {"v"},
	}
	got := updatedHeader(stored, notModified)
	assert.Equal(t, http.Header{
		"Etag":             {`W/"v1"`},
		"Content-Length":   {"5"},
		"Content-Type":     {"text/plain"},
		"Content-Encoding": {"identity"},
		"Cache-Control":    {"max-age=60"},
		"Date":             {"new"},
		"Expires":          {"later"},
		"Vary":             {"Accept"},
		"X-Kept":           {"yes"},
		"X-Lower":          {"v"},
	}, got)
	assert.Equal(t, []string{"old"}, stored["Date"], "the stored header is not changed in place")
}

func TestStoredHeader(t *testing.T) {
	got := storedHeader(http.Header{
		"Etag":               {`"1"`},
		"Connection":         {"keep-alive, X-Private-Hop"},
		"X-Private-Hop":      {"1"},
		"Transfer-Encoding":  {"chunked"},
		"Set-Cookie":         {"a=b"},
		"Proxy-Authenticate": {"Basic"},
		"X-Cache":            {"HIT"},
	})
	assert.Equal(t, http.Header{"Etag": {`"1"`}}, got)
}

func TestURLKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"http://Example.COM/doc", "HTTP://example.com/doc", true},
		{"http://example.com:80/doc", "http://example.com/doc", true},
		{"https://example.com:443/doc", "https://example.com/doc", true},
		{"http://example.com", "http://example.com/", true},
		{"http://user:pw@example.com/doc#frag", "http://example.com/doc", true},
		{"http://example.com/doc", "https://example.com/doc", false},
		{"http://example.com:8080/doc", "http://example.com/doc", false},
		{"http://example.com/doc?a=1", "http://example.com/doc?a=2", false},
		{"http://example.com/doc?a=1&b=2", "http://example.com/doc?b=2&a=1", false},
		{"http://example.com/doc", "http://example.com/Doc", false},
		{"http://example.com/a%2Fb", "http://example.com/a/b", false},
		{"http://example.com/doc?", "http://example.com/doc", false},
	} {
		a, b := urlKey(mustURL(t, tc.a)), urlKey(mustURL(t, tc.b))
		if tc.same {
			assert.Equal(t, a, b)
		} else {
			assert.NotEqual(t, a, b)
		}
		assert.NotContains(t, a, "pw")
	}
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}
