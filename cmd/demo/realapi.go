package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/redact"
)

// realFlags are the flags of real-API mode: where to send one GET, and every way the engine can get
// its token (an access token alone; a refresh token and its endpoint; client credentials), for the
// engine's default family and for any number of named families (-family, repeated).
type realFlags struct {
	baseURL, path                  string
	access, refresh                string
	tokenURL, format               string
	clientID, clientSecret         string
	clientAuth, scopes             string
	bodyLines                      int
	registered                     []string // names of these flags, for "needs -base-url"
	clientCredentials, withRefresh bool     // the grant validate chose
	families                       []familyFlag
}

// familyFlag is one -family: a family's key and its token pair.
type familyFlag struct{ key, access, refresh string }

// parseFamily reads -family KEY=ACCESS[,REFRESH]. A comma cannot occur in a token (RFC 6750
// b64token), so it separates them; the key ends at the first "=".
func parseFamily(v string) (familyFlag, error) {
	key, pair, ok := strings.Cut(v, "=")
	if !ok || key == "" || pair == "" {
		return familyFlag{}, errors.New("want KEY=ACCESS_TOKEN[,REFRESH_TOKEN]")
	}
	access, refresh, _ := strings.Cut(pair, ",")
	return familyFlag{key: key, access: access, refresh: refresh}, nil
}

func (f *realFlags) register(fs *flag.FlagSet) {
	str := func(p *string, name, value, usage string) {
		fs.StringVar(p, name, value, usage)
		f.registered = append(f.registered, name)
	}
	str(&f.baseURL, "base-url", "", "a real API's base URL: send one GET there instead of telling the story")
	str(&f.path, "path", "/", "the path to GET, relative to -base-url")
	str(&f.access, "access-token", "", "an access token for the real API (alone, it is used until it expires)")
	str(&f.refresh, "refresh-token", "", "a refresh token, renewed at -token-url in -format")
	str(&f.tokenURL, "token-url", "", "the real API's token endpoint, for -refresh-token or for client credentials")
	str(&f.format, "format", "oauth2", "how -refresh-token is renewed: oauth2 (RFC 6749 form) or json ({\"refreshToken\": …})")
	str(&f.clientID, "client-id", "", "OAuth2 client ID: with -refresh-token it authenticates refreshes; without, it fetches tokens with the client-credentials grant")
	str(&f.clientSecret, "client-secret", "", "OAuth2 client secret, with -client-id")
	str(&f.clientAuth, "client-auth", "basic", "how client credentials reach -token-url: basic (HTTP Basic) or post (form fields)")
	str(&f.scopes, "scopes", "", "scopes to ask for with client credentials, separated by spaces or commas")
	fs.IntVar(&f.bodyLines, "body-lines", 10, "how many lines of the answer's body to print (0 to 1000)")
	fs.Func("family", "a named credential family, KEY=ACCESS_TOKEN[,REFRESH_TOKEN] (repeat it for several): the GET is sent once per family, with its own tokens, renewed at -token-url", func(v string) error {
		ff, err := parseFamily(v)
		if err == nil {
			f.families = append(f.families, ff)
		}
		return err
	})
	f.registered = append(f.registered, "body-lines", "family")
}

// validate checks the real-API flags together; set holds the names of the flags given. Every error
// names a flag, since that is what the user typed.
func (f *realFlags) validate(set map[string]bool) error {
	if f.format != "oauth2" && f.format != "json" {
		return fmt.Errorf("-format %q: use oauth2 or json", f.format)
	}
	if f.clientAuth != "basic" && f.clientAuth != "post" {
		return fmt.Errorf("-client-auth %q: use basic or post", f.clientAuth)
	}
	if f.bodyLines < 0 || f.bodyLines > 1000 {
		return fmt.Errorf("-body-lines must be between 0 and 1000, not %d", f.bodyLines)
	}
	if f.baseURL == "" {
		for _, name := range f.registered {
			if set[name] {
				return fmt.Errorf("-%s is for a real API: give -base-url too", name)
			}
		}
		return nil
	}
	switch {
	case (f.clientID == "") != (f.clientSecret == ""):
		return errors.New("-client-id and -client-secret go together")
	case f.access == "" && f.refresh == "" && f.clientID == "" && len(f.families) == 0:
		return errors.New("-base-url needs credentials: -access-token, or -refresh-token with -token-url, or -client-id and -client-secret with -token-url, or -family")
	case f.refresh != "" && f.tokenURL == "":
		return errors.New("-refresh-token needs -token-url, where it is renewed")
	case f.familiesRefresh() && f.tokenURL == "":
		return errors.New("-family with a refresh token needs -token-url, where it is renewed")
	case len(f.families) > 0 && f.clientID != "" && f.refresh == "" && !f.familiesRefresh():
		return errors.New("-family holds a family's own tokens; client credentials (-client-id without refresh tokens) serve one family only")
	case f.clientID != "" && f.tokenURL == "":
		return errors.New("-client-id needs -token-url")
	case f.tokenURL != "" && f.refresh == "" && f.clientID == "" && !f.familiesRefresh():
		return errors.New("-token-url needs -refresh-token, a -family with a refresh token, or -client-id and -client-secret")
	}
	f.withRefresh = f.refresh != "" || f.familiesRefresh()
	f.clientCredentials = f.clientID != "" && !f.withRefresh
	switch {
	case set["format"] && !f.withRefresh:
		return errors.New("-format is how -refresh-token is renewed: give -refresh-token too")
	case f.scopes != "" && !f.clientCredentials:
		return errors.New("-scopes is for client credentials (-client-id and -client-secret without -refresh-token)")
	case set["client-auth"] && !f.clientCredentials:
		return errors.New("-client-auth is for client credentials (-client-id and -client-secret without -refresh-token); refreshes authenticate with HTTP Basic")
	}
	return nil
}

// familiesRefresh reports whether a -family carries a refresh token.
func (f *realFlags) familiesRefresh() bool {
	return slices.ContainsFunc(f.families, func(ff familyFlag) bool { return ff.refresh != "" })
}

// options turns the flags into the engine's options. The families' pairs are set once the engine
// runs (realAPI): SetTokens checks them.
func (f *realFlags) options() []engine.Option {
	opts := []engine.Option{engine.WithBaseURL(f.baseURL)}
	if f.access != "" || f.refresh != "" {
		opts = append(opts, engine.WithTokens(engine.Tokens{Access: f.access, Refresh: f.refresh}))
	}
	if len(f.families) > 0 {
		opts = append(opts, engine.WithFamilyStore(&engine.MemoryFamilyStore{}))
	}
	switch {
	case f.withRefresh:
		format := engine.OAuth2Refresh
		if f.format == "json" {
			format = engine.JSONRefresh
		}
		opts = append(opts, engine.WithTokenEndpoint(f.tokenURL, format))
		if f.clientID != "" {
			opts = append(opts, engine.WithClientAuth(f.clientID, f.clientSecret))
		}
	case f.clientCredentials:
		auth := engine.ClientSecretBasic
		if f.clientAuth == "post" {
			auth = engine.ClientSecretPost
		}
		opts = append(opts, engine.WithClientCredentials(engine.ClientCredentials{
			TokenURL:     f.tokenURL,
			ClientID:     f.clientID,
			ClientSecret: f.clientSecret,
			AuthMethod:   auth,
			Scopes:       strings.FieldsFunc(f.scopes, func(r rune) bool { return r == ',' || r == ' ' }),
		}))
	}
	return opts
}

// optionFlags names the flags behind each engine option, so that a configuration error speaks of
// what the user typed.
var optionFlags = map[string]string{
	"WithBaseURL":           "-base-url",
	"WithTokens":            "-access-token/-refresh-token",
	"Family":                "-family",
	"SetTokens":             "-family",
	"WithTokenEndpoint":     "-token-url",
	"WithClientAuth":        "-client-id/-client-secret",
	"WithClientCredentials": "-client-id/-client-secret/-token-url/-scopes",
}

// flagErrors rewrites the engine's configuration errors with flag names: one line each.
func flagErrors(err error) []string {
	var lines []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *engine.ConfigError
		if errors.As(err, &ce) {
			name, ok := optionFlags[ce.Option]
			if !ok {
				name = "the flags"
			}
			lines = append(lines, name+": "+ce.Reason)
			return
		}
		lines = append(lines, err.Error())
	}
	walk(err)
	return lines
}

// answerHeaders are the headers of the answer worth printing: what it is, how it may be cached,
// and what the server says about limits and authentication.
var answerHeaders = []string{"Content-Type", "Content-Length", "Cache-Control", "ETag", "Last-Modified",
	"Location", "Retry-After", "WWW-Authenticate", "X-Request-Id"}

// realAPI sends one GET to a real API through the engine, for the default family (if it was given
// credentials) and for each -family, and prints each answer. It returns the worst exit code.
func realAPI(f realFlags, stdout, stderr io.Writer) int {
	e, err := engine.New(f.options()...)
	if err != nil {
		for _, line := range flagErrors(err) {
			fmt.Fprintln(stderr, "demo:", line)
		}
		return 2
	}
	defer closeEngine(e)
	stdout = &lockedWriter{w: stdout} // events arrive on the engine's goroutine
	e.Subscribe(func(ev engine.Event) { fmt.Fprintf(stdout, "event: %T %+v\n", ev, ev) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := 0
	if f.access != "" || f.refresh != "" || f.clientID != "" {
		code = max(code, getOnce(ctx, f, e.Client(), stdout, stderr))
	}
	for _, ff := range f.families {
		fam, err := e.Family(ff.key)
		if err == nil {
			err = fam.SetTokens(ctx, engine.Tokens{Access: ff.access, Refresh: ff.refresh})
		}
		if err != nil {
			for _, line := range flagErrors(err) {
				fmt.Fprintln(stderr, "demo: -family "+ff.key+":", line)
			}
			return 2
		}
		fmt.Fprintf(stdout, "family %q:\n", ff.key)
		code = max(code, getOnce(ctx, f, fam.Client(), stdout, stderr))
	}
	return code
}

// getOnce sends the GET through client and prints the answer's status, the headers that matter and
// the first lines of its body. It returns the exit code.
func getOnce(ctx context.Context, f realFlags, client *http.Client, stdout, stderr io.Writer) int {
	u := strings.TrimSuffix(f.baseURL, "/") + "/" + strings.TrimPrefix(f.path, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "demo: -path:", err)
		return 2
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "demo: GET", f.path+":", err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Fprintf(stdout, "GET %s: %s in %v\n", u, resp.Status, round(time.Since(t0)))
	for _, h := range answerHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			fmt.Fprintf(stdout, "  %s: %s\n", h, strings.Join(v, ", "))
		}
	}
	var limits []string
	for h := range resp.Header {
		if strings.HasPrefix(h, "Ratelimit") || strings.HasPrefix(h, "X-Ratelimit") {
			limits = append(limits, h)
		}
	}
	slices.Sort(limits)
	for _, h := range limits {
		fmt.Fprintf(stdout, "  %s: %s\n", h, strings.Join(resp.Header.Values(h), ", "))
	}
	printBody(stdout, resp.Body, f.bodyLines)
	if resp.StatusCode >= 400 {
		return 1
	}
	return 0
}

// printBody writes the first lines of body, each clipped, and how much more there was.
func printBody(w io.Writer, body io.Reader, lines int) {
	cr := &countingReader{r: body}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	shown := 0
	for sc.Scan() {
		if shown < lines {
			if shown == 0 {
				fmt.Fprintln(w, "body:")
			}
			fmt.Fprintln(w, "  "+redact.Clip(sc.Text(), 200))
			shown++
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "  (body not read to its end: %v)\n", err)
	}
	fmt.Fprintf(w, "  (%d bytes, %d lines shown)\n", cr.n, shown)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// lockedWriter serialises writes, each of them a whole line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
