// Package actors holds the engine's actors: the token actor that owns the credentials and
// serialises refreshes, the supervisor that owns what retries share (budgets, per-host cool-downs),
// and the request path that runs each logical request and talks to them in messages.
//
// It is the engine's internals and may change in any release. Programs need only the engine
// package, which configures, starts and stops everything here.
package actors
