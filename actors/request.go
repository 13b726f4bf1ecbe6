package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/resilientclient/resilient/messages"
)

// Requester is the request path: an http.RoundTripper that runs each logical request as a small
// actor of its own. The request actor owns its state (attempt, token generation, body) on the
// caller's goroutine, speaks to the token actor only in messages (NeedToken, TokenRejected,
// CancelWait), and reads the token actor's published snapshot on the hot path.
//
// Why not a protoactor actor per request: spawning and stopping one costs several microseconds and
// tens of allocations (see bench/), an order of magnitude more than the whole token-attaching cost
// of golang.org/x/oauth2; the caller's goroutine already exists and already waits, so it serves as
// the request actor's thread with a one-slot reply channel as its mailbox.
//
// A Requester is safe for concurrent use.
type Requester struct {
	Base     http.RoundTripper // sends attempts
	Token    *TokenHandle      // nil for a public client: never attaches a token
	Origins  []Origin          // only requests to these receive the token
	Inflight *Inflight         // tracks requests for Close
	// ByMessage makes every request ask the token actor by message instead of reading the snapshot.
	// It exists to measure what the snapshot saves; leave it false.
	ByMessage bool
}

// RoundTrip runs one logical request: take a token (parking behind a refresh if one runs), send,
// and on a 401 report the rejected generation and resend once with the token that replaces it.
func (r *Requester) RoundTrip(req *http.Request) (*http.Response, error) {
	c, err := r.Inflight.begin(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	defer r.Inflight.returned()
	resp, err := r.run(c.ctx, req)
	if err != nil {
		c.end()
		if errors.Is(context.Cause(c.ctx), messages.ErrClosed) && !errors.Is(err, messages.ErrClosed) {
			err = fmt.Errorf("%w (%w)", messages.ErrClosed, err)
		}
		return nil, err
	}
	if resp.Body == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		// No body to watch, or an upgraded connection whose body must stay a ReadWriteCloser.
		if resp.Body == nil {
			c.end()
		}
		return resp, nil
	}
	c.body = resp.Body
	resp.Body = c
	return resp, nil
}

func (r *Requester) run(ctx context.Context, req *http.Request) (*http.Response, error) {
	if r.Token == nil || !r.forAPI(req.URL) {
		return r.Base.RoundTrip(req.WithContext(ctx))
	}
	acquire := r.Token.Acquire
	if r.ByMessage {
		acquire = r.Token.AcquireByMessage
	}
	g, err := acquire(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := r.Base.RoundTrip(withToken(req, ctx, g.Header, req.Body))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if !replayable(req) {
		// The body is spent: hand the 401 to the caller, but let the token actor know.
		r.Token.ReportRejected(g.Gen)
		return resp, nil
	}
	discard(resp)
	g, err = r.Token.Rejected(ctx, g.Gen)
	if err != nil {
		return nil, err
	}
	body, err := rewind(req)
	if err != nil {
		return nil, fmt.Errorf("engine: replaying the request body: %w", err)
	}
	// At most one resend per logical request: a second 401 goes to the caller as it is. It is still
	// reported: the resend may have carried a token that was current but is rejected too (the first
	// attempt was stale), and only a report for the current generation starts a refresh.
	resp, err = r.Base.RoundTrip(withToken(req, ctx, g.Header, body))
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		r.Token.ReportRejected(g.Gen)
	}
	return resp, err
}

func (r *Requester) forAPI(u *url.URL) bool {
	for _, o := range r.Origins {
		if o.Matches(u) {
			return true
		}
	}
	return false
}

// withToken is req bound to ctx with body and the Authorization header set. The caller's request is
// not modified: the header map is new (its value slices are shared, read-only).
func withToken(req *http.Request, ctx context.Context, header string, body io.ReadCloser) *http.Request {
	r2 := req.WithContext(ctx)
	r2.Body = body
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		h[k] = v
	}
	h["Authorization"] = []string{header}
	r2.Header = h
	return r2
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (io.ReadCloser, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, nil
	}
	return req.GetBody()
}

// discard reads a little of a response we will not return, so its connection can be reused, and
// closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// Origin is a scheme, host and port: the unit that credentials are scoped to.
type Origin struct {
	Scheme string // lower case
	Host   string // lower case, without brackets for IPv6
	Port   string // explicit; the scheme's default when the URL had none
}

// ParseOrigin reads the origin of an absolute http or https URL.
func ParseOrigin(raw string) (Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Origin{}, err
	}
	o := originOf(u)
	if o.Scheme != "http" && o.Scheme != "https" {
		return Origin{}, fmt.Errorf("%q is not an absolute http or https URL", raw)
	}
	if o.Host == "" {
		return Origin{}, fmt.Errorf("%q has no host", raw)
	}
	return o, nil
}

func originOf(u *url.URL) Origin {
	scheme := strings.ToLower(u.Scheme)
	return Origin{Scheme: scheme, Host: strings.ToLower(u.Hostname()), Port: portOf(scheme, u.Port())}
}

func portOf(scheme, port string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Matches reports whether u belongs to the origin. It allocates nothing.
func (o Origin) Matches(u *url.URL) bool {
	if !strings.EqualFold(u.Scheme, o.Scheme) {
		return false
	}
	host, port := splitHostPort(u.Host)
	return strings.EqualFold(host, o.Host) && portOf(o.Scheme, port) == o.Port
}

// splitHostPort is url.URL's Hostname and Port without their allocations.
func splitHostPort(hostport string) (host, port string) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, port
}

// String is scheme://host:port.
func (o Origin) String() string {
	return o.Scheme + "://" + net.JoinHostPort(o.Host, o.Port)
}
