package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/resilientclient/resilient/actors"
)

// Credential is an access token the engine handed out, with the generation it belongs to, so that a
// rejection can be reported against that very token (a report about a token already replaced starts
// no refresh). Its String, Format and LogValue never show the token.
type Credential struct {
	AccessToken string    // send as "Authorization: Bearer <AccessToken>" (Header does it)
	Expiry      time.Time // zero when unknown
	gen         uint64
}

// Header is the Authorization header value: "Bearer " + AccessToken.
func (c Credential) Header() string { return "Bearer " + c.AccessToken }

// String describes the credential without its token.
func (c Credential) String() string {
	state := "none"
	if c.AccessToken != "" {
		state = "set"
	}
	exp := "unknown"
	if !c.Expiry.IsZero() {
		exp = c.Expiry.UTC().Format(time.RFC3339)
	}
	return "Credential{token: " + state + ", expiry: " + exp + "}"
}

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

// Format makes every fmt verb print the redacted form.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue makes log/slog print the redacted form.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

func credential(g actors.Grant) Credential {
	tok, _ := strings.CutPrefix(g.Header, "Bearer ")
	return Credential{AccessToken: tok, Expiry: g.Expiry, gen: g.Gen}
}

// tokenHandle is the token actor of an authenticated, open engine.
func (e *Engine) tokenHandle(op string) (*actors.TokenHandle, error) {
	if e.token == nil {
		return nil, configErr(op, "a public engine holds no tokens")
	}
	if e.inflight.Closed() {
		return nil, ErrClosed
	}
	return e.token, nil
}

// Credential returns the access token to send now, from the engine's token actor: at once while the
// token is valid, else after the one refresh that every waiting caller shares. It exists for
// integrations that attach the token themselves (grpcauth, other protocols); requests through the
// engine's own client need nothing of the kind. It returns ctx's error when ctx ends first, and the
// engine's typed errors (ErrSessionExpired, ErrRefreshFailed, ErrClosed) otherwise.
func (e *Engine) Credential(ctx context.Context) (Credential, error) {
	h, err := e.tokenHandle("Credential")
	if err != nil {
		return Credential{}, err
	}
	g, err := h.AcquireAt(ctx, time.Now())
	if err != nil {
		return Credential{}, err
	}
	return credential(g), nil
}

// Rejected reports that the server refused c (an HTTP 401, a gRPC UNAUTHENTICATED) and returns the
// credential to retry with: the current one if c was already replaced, else the one that the refresh
// this report starts (or joins) brings. However many callers report the same token, one refresh runs.
// It exists for integrations; resend at most once with the result.
func (e *Engine) Rejected(ctx context.Context, c Credential) (Credential, error) {
	h, err := e.tokenHandle("Rejected")
	if err != nil {
		return Credential{}, err
	}
	g, err := h.Rejected(ctx, c.gen)
	if err != nil {
		return Credential{}, err
	}
	return credential(g), nil
}

// ReportRejected is Rejected without waiting for a new token, for a caller that will not retry (a
// stream that already failed, a second refusal). It does nothing on a public or closed engine.
func (e *Engine) ReportRejected(c Credential) {
	if h, err := e.tokenHandle("ReportRejected"); err == nil {
		h.ReportRejected(c.gen)
	}
}

// TokenSource returns an oauth2.TokenSource served by the engine's token actor, for SDKs that take
// one (cloud SDKs, oauth2.NewClient): they then share the engine's token and its single refresh
// instead of refreshing on their own and replaying a rotated refresh token. Token answers from the
// snapshot while the token is valid and otherwise waits for the refresh in progress (bounded by the
// refresh timeout, not by a context: TokenSource has none). The token carries its expiry when the
// engine knows it, so a caching wrapper (oauth2.ReuseTokenSource, which oauth2.NewClient adds) asks
// again in time; such a client does not report rejections, so after a 401 it keeps its token until
// that expiry. It returns an error on a public engine. Safe for concurrent use.
func (e *Engine) TokenSource() oauth2.TokenSource { return engineSource{e} }

type engineSource struct{ e *Engine }

// Token returns the engine's current access token (see Engine.TokenSource).
func (s engineSource) Token() (*oauth2.Token, error) {
	c, err := s.e.Credential(context.Background())
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: c.AccessToken, TokenType: "Bearer", Expiry: c.Expiry}, nil
}
