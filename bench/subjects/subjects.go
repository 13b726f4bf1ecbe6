// Package subjects builds the clients the harness races: raw net/http, the peers (x/oauth2,
// go-retryablehttp, resty), two hand-written refresh-on-401 clients (naive and single-flight), and
// the engine. Every subject is built against the same Env and answers the same Do call, so a
// workload never knows which one it drives.
//
// Fairness rules every subject follows:
//   - each gets the same transport (Env.Transport), tuned so that idle connections per host are at
//     least the highest concurrency of any workload, through the hook its docs name;
//   - each is configured as its docs recommend, loggers silenced (a benchmark prints nothing per
//     request);
//   - where a peer cannot refresh on a 401, it gets the smallest wrapper its hooks allow, written
//     here and described in its Setup.
package subjects

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/resilientclient/resilient/engine"
)

// Tokens is a credential pair with the access token's expiry (zero when unknown).
type Tokens = engine.Tokens

// Env is what a subject is built against: one API, its token endpoint, the starting credentials, and
// the transport every request and refresh must use. The harness owns the transport and closes its
// idle connections after the subject's Close.
type Env struct {
	BaseURL   string            // the API, e.g. http://127.0.0.1:port
	TokenURL  string            // its RFC 6749 refresh endpoint
	Tokens    Tokens            // the credentials to start with
	Transport http.RoundTripper // carries every attempt and refresh
}

// Request is one logical request, as the workload sees it.
type Request struct {
	Method string
	URL    string      // absolute
	Body   []byte      // sent as application/json when not nil; replayable by every subject
	Header http.Header // extra headers (a request id, say), shared: subjects must not change it
}

// Client is one subject built for one run. Do sends a logical request (with whatever refreshes and
// retries the subject does), reads the whole answer and closes it; it returns the final status, or
// an error when there was no final answer. Clients are safe for concurrent use.
type Client interface {
	Do(ctx context.Context, r Request) (status int, err error)
	// Close releases what the client started (the engine's actors, say). It does not close the
	// Env's transport.
	Close(ctx context.Context) error
}

// Subject is one contender: a short name for tables, a sentence on its configuration for
// RESULTS.md, and its constructor.
type Subject struct {
	Name  string
	Setup string
	New   func(Env) (Client, error)
	// Refreshes says whether the subject can refresh an access token at all; the refresh-storm
	// workload skips those that cannot.
	Refreshes bool
}

// Raw is the baseline: net/http with the current access token set by hand on each request. It never
// refreshes and never retries.
const Raw = "raw"

// All returns every subject, raw first.
func All() []Subject {
	return []Subject{rawSubject(), oauth2Subject(), retryableSubject(), restySubject(), naiveSubject(), singleflightSubject(), engineSubject(), engineOTelSubject(), engineOTelSampledSubject(), otelhttpSubject()}
}

// Named returns the subjects of All whose names are in names, in All's order; an unknown name is an
// error.
func Named(names ...string) ([]Subject, error) {
	var out []Subject
	for _, s := range All() {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	if len(out) != len(names) {
		return nil, errors.New("subjects: unknown subject name in " + joinNames(names))
	}
	return out, nil
}

func joinNames(names []string) string {
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
	}
	return b.String()
}

// NewTransport returns the transport every subject gets: a clone of http.DefaultTransport whose
// idle pool holds maxIdle connections per host (and in all), so no subject pays for connections
// it has to close and open again at the workload's concurrency.
func NewTransport(maxIdle int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdle
	t.MaxIdleConnsPerHost = maxIdle
	t.IdleConnTimeout = time.Minute
	return t
}

// newHTTPRequest builds r as a *http.Request whose body can be replayed (GetBody).
func newHTTPRequest(ctx context.Context, r Request) (*http.Request, error) {
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// send is Do for subjects that are an *http.Client: it sets auth (when not empty) as the
// Authorization header, sends, drains and closes.
func send(ctx context.Context, c *http.Client, r Request, auth string) (int, error) {
	req, err := newHTTPRequest(ctx, r)
	if err != nil {
		return 0, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	return drain(resp)
}

// drain reads the whole body and closes it; an error while reading is the request's error.
func drain(resp *http.Response) (int, error) {
	_, err := io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// bearer is the Authorization value for access token tok.
func bearer(tok string) string { return "Bearer " + tok }
