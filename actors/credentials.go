package actors

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The credentials stage: a token for each attempt to the API's origins, and the one resend after a
// 401 with the token that replaces the rejected one.

// Credentials is where the request path gets its tokens and reports the ones the API rejected: a
// token actor's TokenHandle, or something that finds the right token actor first (the engine's
// families). Implementations are safe for concurrent use.
type Credentials interface {
	// AcquireAt returns the token to send at now, parking until a refresh ends if one must run.
	AcquireAt(ctx context.Context, now time.Time) (Grant, error)
	// Rejected reports a 401 for generation gen and returns the token to retry with.
	Rejected(ctx context.Context, gen uint64) (Grant, error)
	// ReportRejected reports a 401 for generation gen without waiting.
	ReportRejected(gen uint64)
}

// attempt makes one attempt with body: a token, a send, and after a 401 (once per logical request)
// a resend with the token that replaces the rejected one.
func (r *Requester) attempt(ctx context.Context, req *http.Request, body io.ReadCloser, st *attemptState) (*http.Response, error) {
	own := st.tel.Injects() // the trace context goes into the header: it must be a copy
	if r.Token == nil || !r.forAPI(req.URL) {
		return r.exchange(ctx, r.prepare(req, ctx, body, nil, own), st)
	}
	g, err := r.Token.AcquireAt(ctx, st.clock())
	st.granted(ctx, &g, err)
	if g.Header != "" {
		st.token = g.Header
	}
	if err != nil {
		closeReader(body)
		st.noToken = true
		return nil, err
	}
	resp, err := r.exchange(ctx, r.prepare(req, ctx, body, st.authValues(g.Header), own), st)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || st.replayed {
		if err == nil && resp.StatusCode == http.StatusUnauthorized {
			r.Token.ReportRejected(g.Gen) // a second 401: the caller gets it, the token actor hears of it
		}
		return resp, err
	}
	if !replayable(req) {
		// The body is spent: hand the 401 to the caller, but let the token actor know.
		r.Token.ReportRejected(g.Gen)
		return resp, nil
	}
	discard(resp)
	st.replayed = true
	st.rejected = st.token
	g, err = r.Token.Rejected(ctx, g.Gen)
	st.granted(ctx, &g, err)
	if g.Header != "" {
		st.token = g.Header
	}
	if err != nil {
		st.noToken = true
		return nil, err
	}
	body, err = rewind(req)
	if err != nil {
		return nil, fmt.Errorf("engine: replaying the request body: %w", err)
	}
	// At most one resend per logical request: a second 401 goes to the caller as it is. It is still
	// reported: the resend may have carried a token that was current but is rejected too (the first
	// attempt was stale), and only a report for the current generation starts a refresh.
	resp, err = r.exchange(ctx, r.prepare(req, ctx, body, st.authValues(g.Header), own), st)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		r.Token.ReportRejected(g.Gen)
	}
	return resp, err
}

// granted records what acquiring a token cost a request: the generation it got, and when it was
// parked behind a refresh, how long, how it ended, and the refresh's span (linked).
func (st *attemptState) granted(ctx context.Context, g *Grant, err error) {
	st.tel.Token(g.Gen)
	if !g.Parked() {
		return
	}
	outcome := "token"
	switch {
	case err != nil && ctx.Err() != nil:
		outcome = "cancelled"
	case err != nil:
		outcome = "error"
	}
	st.tel.Parked(g.ParkedAt, g.ReleasedAt, outcome, g.Refresh)
}

// authValues is the Authorization header's value slice for one send, owned by that send alone: a
// downstream transport that edits header values in place (against the RoundTripper contract, but
// it happens) then spoils only its own send, never the token other requests send. The first send
// uses the slot its call record carries (no allocation); later ones get a new slice, since a
// transport may still hold an earlier one.
func (st *attemptState) authValues(auth string) []string {
	if b := st.auth; b != nil {
		st.auth = nil
		b[0] = auth
		return b[:]
	}
	return []string{auth}
}

func (r *Requester) forAPI(u *url.URL) bool {
	for _, o := range r.Origins {
		if o.Matches(u) {
			return true
		}
	}
	return false
}
