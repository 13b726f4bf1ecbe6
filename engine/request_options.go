package engine

import (
	"context"

	"github.com/resilientclient/resilient/actors"
)

// WithoutIdempotencyKey returns a copy of ctx that turns the engine's Idempotency-Key off for the
// requests made with it, whatever the RetryPolicy says: a POST or PATCH sent with it carries no key
// the engine made (a key the caller set stays), and so it is not retried once it may have reached
// the server (only a refused connection, where nothing was sent, is tried again). Use it for an API
// that refuses unknown headers, or for a call that must be sent at most once. It works with the
// typed helpers (pass the returned ctx) and with Client() and Transport() (through the request's
// context).
func WithoutIdempotencyKey(ctx context.Context) context.Context {
	return actors.WithoutIdempotencyKey(ctx)
}
