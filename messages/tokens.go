package messages

import (
	"fmt"
	"log/slog"
	"time"
)

// Tokens is one credential pair: the access token sent as a bearer token, the refresh token that buys
// the next access token, and when the access token expires (zero: unknown, valid until a 401).
//
// Its String, GoString and LogValue methods never print the secrets, so a Tokens value that ends up in
// a log line, an error or a test failure shows only whether each part is present.
type Tokens struct {
	Access  string
	Refresh string
	Expiry  time.Time
	// Type is the Authorization scheme the access token is sent with (the token answer's
	// token_type); "" means "Bearer".
	Type string
}

// Scheme is the Authorization scheme to send the access token with: Type, or "Bearer".
func (t Tokens) Scheme() string {
	if t.Type == "" {
		return "Bearer"
	}
	return t.Type
}

// redacted describes a secret without revealing it.
func redacted(s string) string {
	if s == "" {
		return "none"
	}
	return "set"
}

// String describes the pair without its secrets.
func (t Tokens) String() string {
	exp := "unknown"
	if !t.Expiry.IsZero() {
		exp = t.Expiry.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("Tokens{Access: %s, Refresh: %s, Expiry: %s}", redacted(t.Access), redacted(t.Refresh), exp)
}

// GoString is String, so %#v does not print the secrets either.
func (t Tokens) GoString() string { return t.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q) print the redacted form.
func (t Tokens) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue makes log/slog print the redacted form.
func (t Tokens) LogValue() slog.Value { return slog.StringValue(t.String()) }
