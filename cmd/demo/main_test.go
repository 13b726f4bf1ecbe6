package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The whole story, smaller, through the command itself with -json: every act's verdict holds, and
// the document has the shape a CI job reads (one entry per act, its checks and its figures).
func TestStoryJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"-json", "-requests", "200"}, &out, &errOut)

	var doc struct {
		OK       bool `json:"ok"`
		Requests int  `json:"requests"`
		Acts     []struct {
			Act     int     `json:"act"`
			Title   string  `json:"title"`
			OK      bool    `json:"ok"`
			Seconds float64 `json:"seconds"`
			Checks  []struct {
				What   string `json:"what"`
				OK     bool   `json:"ok"`
				Detail string `json:"detail"`
			} `json:"checks"`
			Figures map[string]float64 `json:"figures"`
		} `json:"acts"`
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&doc), "stdout is one JSON document and nothing else")
	assert.False(t, dec.More(), "nothing after the document")
	require.Len(t, doc.Acts, 5, errOut.String())
	for i, a := range doc.Acts {
		assert.Equal(t, i+1, a.Act)
		assert.NotEmpty(t, a.Title)
		assert.NotEmpty(t, a.Checks, "act %d checked nothing", a.Act)
		for _, c := range a.Checks {
			assert.True(t, c.OK, "act %d: %s (%s)", a.Act, c.What, c.Detail)
		}
		assert.True(t, a.OK, "act %d: %v", a.Act, a.Figures)
		assert.Positive(t, a.Seconds)
	}
	// The figures each act's sentence explains.
	for act, keys := range map[int][]string{
		1: {"requests", "met_401", "refresh_calls", "p50_ms", "fresh_p50_ms"},
		2: {"requests", "met_401", "proactive_refreshes"},
		3: {"session_expired", "refresh_calls", "slowest_ms"},
		4: {"outage_requests", "outage_attempts", "amplification", "failed", "failed_slowest_ms", "orders_created"},
		5: {"took_ms", "sends"},
	} {
		for _, k := range keys {
			assert.Contains(t, doc.Acts[act-1].Figures, k, "act %d", act)
		}
	}
	assert.Equal(t, 200.0, doc.Acts[0].Figures["requests"])
	assert.Equal(t, 1.0, doc.Acts[0].Figures["refresh_calls"])
	assert.Equal(t, 100.0, doc.Acts[3].Figures["orders_created"])
	assert.True(t, doc.OK)
	assert.Equal(t, 200, doc.Requests)
	assert.Equal(t, 0, code, errOut.String())
}

// -quiet prints the verdict lines and nothing else: no figures, no chart, no tree.
func TestQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole story (TestStoryJSON checks its verdicts)")
	}
	var out, errOut bytes.Buffer
	code := run([]string{"-quiet", "-requests", "100"}, &out, &errOut)
	assert.Equal(t, 0, code, out.String()+errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Greater(t, len(lines), 5)
	for _, l := range lines[:len(lines)-1] {
		assert.Regexp(t, `^act [1-5] ok   \S`, l)
	}
	assert.Equal(t, "demo: every act went as it should", lines[len(lines)-1])
	for act := 1; act <= 5; act++ {
		assert.Contains(t, out.String(), "act "+string(rune('0'+act))+" ok")
	}
}

// Every act explains its numbers, and act 4 draws its chart, when the output is for a person.
func TestActsExplain(t *testing.T) {
	tel, err := startTelemetry("")
	require.NoError(t, err)
	defer tel.stop(io.Discard)
	for i, act := range story(tel) {
		if testing.Short() && i == 1 {
			continue // act 2 runs for 3 s
		}
		var out bytes.Buffer
		r := newReporter(&out, false, false)
		act(r, 100)
		r.end(1)
		assert.True(t, r.ok(), out.String())
		assert.NotContains(t, out.String(), "FAIL")
		assert.Contains(t, out.String(), "  → ", "act %d explains its numbers", i+1)
		assert.NotContains(t, out.String(), "\x1b[", "no escape sequences when stdout is not a terminal")
		if i == 3 {
			assert.Contains(t, out.String(), "┤", "act 4 draws its chart")
			assert.Contains(t, out.String(), "attempts the server received")
		}
	}
}

// Usage errors exit 2 with the usage, and name the flag at fault (never an engine option).
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"stray argument", []string{"story"}, `unexpected argument "story"`},
		{"stray argument after flags", []string{"-requests", "10", "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"too many requests", []string{"-requests", "20001"}, "-requests must be between 1 and 20000"},
		{"no requests", []string{"-requests", "0"}, "-requests must be between 1 and 20000"},
		{"quiet and json", []string{"-quiet", "-json"}, "-quiet and -json"},
		{"unknown format", []string{"-base-url", "http://127.0.0.1:1", "-refresh-token", "r", "-token-url", "http://127.0.0.1:1/t", "-format", "xml"}, `-format "xml": use oauth2 or json`},
		{"unknown format without base-url", []string{"-format", "xml"}, `-format "xml"`},
		{"unknown client auth", []string{"-client-auth", "jwt"}, `-client-auth "jwt"`},
		{"real-API flag without base-url", []string{"-access-token", "a"}, "-access-token is for a real API: give -base-url too"},
		{"base-url without credentials", []string{"-base-url", "http://127.0.0.1:1"}, "-base-url needs credentials"},
		{"refresh token without endpoint", []string{"-base-url", "http://127.0.0.1:1", "-refresh-token", "r"}, "-refresh-token needs -token-url"},
		{"client id without secret", []string{"-base-url", "http://127.0.0.1:1", "-client-id", "c", "-token-url", "http://127.0.0.1:1/t"}, "-client-id and -client-secret go together"},
		{"client credentials without endpoint", []string{"-base-url", "http://127.0.0.1:1", "-client-id", "c", "-client-secret", "s"}, "-client-id needs -token-url"},
		{"endpoint without a grant", []string{"-base-url", "http://127.0.0.1:1", "-access-token", "a", "-token-url", "http://127.0.0.1:1/t"}, "-token-url needs -refresh-token"},
		{"format without refresh token", []string{"-base-url", "http://127.0.0.1:1", "-access-token", "a", "-format", "json"}, "-format is how -refresh-token is renewed"},
		{"scopes without client credentials", []string{"-base-url", "http://127.0.0.1:1", "-access-token", "a", "-scopes", "read"}, "-scopes is for client credentials"},
		{"client auth with a refresh token", []string{"-base-url", "http://127.0.0.1:1", "-refresh-token", "r", "-token-url", "http://127.0.0.1:1/t", "-client-id", "c", "-client-secret", "s", "-client-auth", "post"}, "-client-auth is for client credentials"},
		{"story flag with base-url", []string{"-base-url", "http://127.0.0.1:1", "-access-token", "a", "-quiet"}, "-quiet applies to the story"},
		{"engine rejects the base URL", []string{"-base-url", "ftp://127.0.0.1:1", "-access-token", "a"}, "demo: -base-url: "},
		{"family without tokens", []string{"-base-url", "http://127.0.0.1:1", "-family", "acme"}, "want KEY=ACCESS_TOKEN[,REFRESH_TOKEN]"},
		{"family without a key", []string{"-base-url", "http://127.0.0.1:1", "-family", "=a,r"}, "want KEY=ACCESS_TOKEN[,REFRESH_TOKEN]"},
		{"family refresh token without endpoint", []string{"-base-url", "http://127.0.0.1:1", "-family", "acme=a,r"}, "-family with a refresh token needs -token-url"},
		{"family with client credentials", []string{"-base-url", "http://127.0.0.1:1", "-family", "acme=a", "-client-id", "c", "-client-secret", "s", "-token-url", "http://127.0.0.1:1/t"}, "-family holds a family's own tokens"},
		{"family token that cannot be sent", []string{"-base-url", "http://127.0.0.1:1", "-family", "acme=a b"}, "demo: -family acme: -family: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			assert.Equal(t, 2, code)
			assert.Contains(t, errOut.String(), tc.want)
			assert.NotContains(t, errOut.String(), "engine: invalid configuration", "the flag is named, not the option")
			assert.Empty(t, out.String(), "nothing ran")
			if tc.name != "engine rejects the base URL" && tc.name != "family token that cannot be sent" {
				assert.Contains(t, errOut.String(), "The demo runs five short acts", "the usage follows the error")
			}
		})
	}
}

// -h starts with what the demo shows and how long it takes.
func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, run([]string{"-h"}, &out, &errOut))
	assert.True(t, strings.HasPrefix(errOut.String(), "The demo runs five short acts"), errOut.String())
	assert.Contains(t, errOut.String(), "about ten seconds")
	assert.Contains(t, errOut.String(), "-client-secret")
}

// Real-API mode, against the fake API standing in for a real one: every way of getting a token
// works, and the answer's status, headers and body are printed.
func TestRealAPI(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  func(srv *fakeapi.Server) []string
		check func(t *testing.T, srv *fakeapi.Server)
	}{
		{"access token", func(srv *fakeapi.Server) []string {
			return []string{"-access-token", srv.Login("ada").Access}
		}, func(t *testing.T, srv *fakeapi.Server) { assert.Zero(t, srv.Stats().RefreshCalls) }},
		{"refresh token renews an expired access token", func(srv *fakeapi.Server) []string {
			tok := srv.Login("ada")
			srv.ExpireAccessTokens()
			return []string{"-access-token", tok.Access, "-refresh-token", tok.Refresh, "-token-url", srv.OAuth2TokenURL()}
		}, func(t *testing.T, srv *fakeapi.Server) { assert.Equal(t, int64(1), srv.Stats().RefreshCalls) }},
		{"several families, each with its own tokens", func(srv *fakeapi.Server) []string {
			a, b := srv.Login("acme"), srv.Login("globex")
			srv.ExpireAccessTokens()
			return []string{"-family", "acme=" + a.Access + "," + a.Refresh, "-family", "globex=" + b.Access + "," + b.Refresh, "-token-url", srv.OAuth2TokenURL()}
		}, func(t *testing.T, srv *fakeapi.Server) {
			assert.Equal(t, int64(2), srv.Stats().RefreshCalls, "one refresh per family")
			assert.Zero(t, srv.Stats().ReuseDetected)
		}},
		{"client credentials with scopes, sent as form fields", func(srv *fakeapi.Server) []string {
			srv.RegisterClient("svc", "s3cret", fakeapi.ClientSecretPost)
			return []string{"-client-id", "svc", "-client-secret", "s3cret", "-client-auth", "post", "-scopes", "read,write", "-token-url", srv.OAuth2TokenURL()}
		}, func(t *testing.T, srv *fakeapi.Server) {
			grants := srv.ClientGrants()
			require.Len(t, grants, 1)
			assert.Equal(t, "read write", grants[0].Scope)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeapi.Start(fakeapi.Options{Opaque: true})
			defer srv.Close()
			var out, errOut bytes.Buffer
			args := append([]string{"-base-url", srv.URL(), "-path", "/items/7", "-body-lines", "3"}, tc.args(srv)...)
			code := run(args, &out, &errOut)
			assert.Equal(t, 0, code, out.String()+errOut.String())
			assert.Contains(t, out.String(), "GET "+srv.URL()+"/items/7: 200 OK")
			assert.Contains(t, out.String(), "  Content-Type: application/json")
			assert.Contains(t, out.String(), "body:")
			assert.Regexp(t, `\(\d+ bytes, [1-3] lines shown\)`, out.String())
			assert.NotContains(t, out.String(), "s3cret")
			tc.check(t, srv)
		})
	}
}

// An answer of 400 or more is printed, and the exit code says it failed.
func TestRealAPIErrorStatus(t *testing.T) {
	srv := fakeapi.Start(fakeapi.Options{})
	defer srv.Close()
	var out, errOut bytes.Buffer
	code := run([]string{"-base-url", srv.URL(), "-path", "/nowhere", "-access-token", srv.Login("ada").Access}, &out, &errOut)
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String(), "404 Not Found", errOut.String())
}

// -otlp-endpoint sends spans and metrics over OTLP/HTTP: a loopback server standing in for a
// collector receives both.
func TestOTLPEndpoint(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if len(body) > 0 && r.Header.Get("Content-Type") == "application/x-protobuf" {
			got[r.URL.Path]++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	tel, err := startTelemetry(strings.TrimPrefix(collector.URL, "http://"))
	require.NoError(t, err)
	var out bytes.Buffer
	r := newReporter(&out, false, false)
	traceAct(tel.spans)(r, 1)
	assert.True(t, r.ok(), out.String())
	tel.stop(&out)
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, got["/v1/traces"], "spans reached the collector: %v\n%s", got, out.String())
	assert.Positive(t, got["/v1/metrics"], "metrics reached the collector: %v", got)
	assert.Contains(t, out.String(), "sent to")
}

// Bars and colours are for terminals only: a file, and a character device that is not a terminal
// (/dev/null), get plain output.
func TestNotATerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer file.Close()
	for _, w := range []io.Writer{devNull, file, &bytes.Buffer{}} {
		r := newReporter(w, false, false)
		assert.False(t, r.tty, "%T", w)
		assert.Nil(t, r.progress("x", 10, false))
	}
}

// -cluster: three replica processes share one family through a SQLite file; one refresh serves all.
// It builds the replica program from ./sqlitestore, so it runs from the repository's root.
func TestClusterAct(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the SQLite replica program")
	}
	t.Chdir("../..")
	var out, errOut bytes.Buffer
	code := run([]string{"-cluster"}, &out, &errOut)
	require.Equal(t, 0, code, out.String()+errOut.String())
	assert.Contains(t, out.String(), "token endpoint: 1 refresh call(s) for 900 requests on 3 processes; refresh tokens replayed: 0")
	assert.Contains(t, out.String(), "Cluster: ok: one refresh served every replica")

	errOut.Reset()
	code = run([]string{"-cluster", "-quiet"}, &out, &errOut)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut.String(), "-quiet applies to the story, not to -cluster")
}
