// Package engine is a resilient client for token-protected REST APIs, for Go services that call them
// from thousands of goroutines at once.
//
// Give it the API's base URL and credentials, then use it as any http.RoundTripper or *http.Client,
// or through the typed helpers (GetJSON, PostJSON, ...):
//   - the access token goes only to the API's origin (scheme, host and port);
//   - when the token expires or the API answers 401, exactly one refresh runs, however many requests
//     noticed; they all wait for it (each within its own context) and are resent once with the new
//     token. A 401 for a token that was already replaced starts no second refresh;
//   - a token whose expiry is known is refreshed ahead of time, so steady traffic meets no 401;
//   - rotating refresh tokens are replaced (and saved with a TokenStore) before anyone is released;
//   - a refused refresh fails every waiting request with ErrSessionExpired at once, publishes a
//     SessionExpired event, and later requests fail fast until SetTokens;
//   - 429, 5xx and network failures are retried (RetryPolicy): jittered exponential backoff, the
//     server's Retry-After honoured and shared by every request to that host, POST and PATCH only
//     with an Idempotency-Key (added by the engine, the same on every attempt), and a per-host retry
//     budget so that an outage cannot multiply the traffic;
//   - failures are parsed once (APIError, from RFC 9457 problem+json, JSON message fields or text)
//     and reported once per failed request to WithErrorHandler;
//   - GET answers with an ETag are revalidated with If-None-Match (WithCache), partitioned by the
//     credentials that fetched them, so one user never sees another's data;
//   - Close cancels everything still running and leaves no goroutine behind.
//
// Options configure New and NewPublic; Option states the one rule for defaults and zero values, and
// each With function its own default. Bad options are a *ConfigError, never a panic.
//
// Inside, a token actor (protoactor-go) owns the credentials and serializes refreshes; requests talk
// to it in messages and, while the token is valid, read an immutable snapshot it publishes. A
// supervisor actor owns what retries share (budgets, per-host cool-downs). They live in packages
// actors and messages, internals that may change in any release: programs import only engine,
// never protoactor.
package engine
