package redact

import (
	"encoding/base64"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/items/1", "https://api.example.com/items/1"},
		{"https://api.example.com/items?api_key=SECRET&page=2", "https://api.example.com/items?api_key=redacted&page=redacted"},
		{"https://user:pass@api.example.com/x", "https://api.example.com/x"},
		{"https://api.example.com/x#access_token=SECRET", "https://api.example.com/x"},
		{"https://api.example.com/x?sig=a&sig=b", "https://api.example.com/x?sig=redacted"},
		{"http://[::1]:8080/x?token=t", "http://[::1]:8080/x?token=redacted"},
	} {
		u, err := url.Parse(tc.in)
		require.NoError(t, err)
		assert.Equal(t, tc.want, URL(u), tc.in)
		assert.NotContains(t, URL(u), "SECRET")
	}
	assert.Equal(t, "", URL(nil))
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"héllo", 2, "h…"}, // é is two bytes: never cut inside it
		{"日本語", 4, "日…"},
		{"bad\xffbyte", 100, "bad\uFFFDbyte"},
		{"x", 0, "…"},
		{"", 0, ""},
	} {
		got := Clip(tc.in, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestSecrets(t *testing.T) {
	const long = "rt-0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{"short secret never garbles", "invalid_grant", []string{"r"}, "invalid_grant"},
		{"seven bytes is still too short", "error abcdefg here", []string{"abcdefg"}, "error abcdefg here"},
		{"eight bytes is replaced", "error abcdefgh here", []string{"abcdefgh"}, "error [redacted] here"},
		{"long secret, every occurrence", "token " + long + " is revoked (" + long + ")", []string{long},
			"token [redacted] is revoked ([redacted])"},
		{"the longer secret wins", "Authorization: Bearer " + long, []string{long, "Bearer " + long},
			"Authorization: [redacted]"},
		{"empty secrets are skipped", "nothing to hide", []string{"", "r"}, "nothing to hide"},
		{"a piece of a secret stays", "prefix rt-0123456789 only", []string{long}, "prefix rt-0123456789 only"},
		{"no secrets", "as is", nil, "as is"},
		{"empty text", "", []string{long}, ""},
		{"query-escaped", "refresh_token=rt%2Fab%2Bcd%3D0123456789&x=1", []string{"rt/ab+cd=0123456789"},
			"refresh_token=[redacted]&x=1"},
		{"query-escaped, lower-case hex", "refresh_token=rt%2fab%2bcd%3d0123456789", []string{"rt/ab+cd=0123456789"},
			"refresh_token=[redacted]"},
		{"query-escaped space", "secret=two+words+here", []string{"two words here"}, "secret=[redacted]"},
		{"path-escaped", "/users/a%20b%2Fc0123456789/x", []string{"a b/c0123456789"}, "/users/[redacted]/x"},
		{"JSON-escaped", `{"t":"a\"b\\c\u003c0123456789"}`, []string{`a"b\c<0123456789`}, `{"t":"[redacted]"}`},
		{"JSON-escaped without HTML escaping", `{"t":"a\"b<0123456789"}`, []string{`a"b<0123456789`}, `{"t":"[redacted]"}`},
		{"JSON-escaped slash", `{"t":"rt\/0123456789"}`, []string{"rt/0123456789"}, `{"t":"[redacted]"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Secrets(tc.in, tc.secrets...))
		})
	}
}

// A Basic header's value is base64 of id:secret, each form-encoded first (RFC 6749 §2.3.1); a
// server echoing the header is scrubbed when the values are added to the secrets.
func TestBasicCredentials(t *testing.T) {
	const id, secret = "svc+a", "s3cret/value=long"
	enc := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	raw := base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
	assert.ElementsMatch(t, []string{enc, raw}, BasicCredentials(id, secret))
	assert.Equal(t, "got Basic [redacted] and Basic [redacted]",
		Secrets("got Basic "+enc+" and Basic "+raw, BasicCredentials(id, secret)...))
	assert.Len(t, BasicCredentials("plain", "plainsecret"), 1, "the same value once")
	assert.Empty(t, BasicCredentials("id", ""))
}
