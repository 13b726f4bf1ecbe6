package messages

import "errors"

// Sentinel errors shared by the actors and re-exported by package engine, so that errors.Is works
// across the package boundary with a single value.
var (
	// ErrSessionExpired: the credentials can no longer be refreshed (the token endpoint refused the
	// refresh token, or there is none). Every later request fails fast with it until new tokens are set.
	ErrSessionExpired = errors.New("engine: session expired")
	// ErrClosed: the engine was closed before or while the request ran.
	ErrClosed = errors.New("engine: closed")
	// ErrRefreshFailed: a refresh failed for a reason that may pass (the token endpoint answered 5xx or
	// 429, timed out, or could not be reached). The credentials are kept and the next request tries again.
	ErrRefreshFailed = errors.New("engine: token refresh failed")
)
