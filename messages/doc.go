// Package messages holds the protocol spoken between the engine's actors: plain value types, sent by
// value, that carry no behaviour of their own.
//
// The conversation of one logical request with the token actor is:
//
//	requester ──NeedToken{Reply}──────────────▶ token actor
//	          ◀─TokenReply{Token, Gen} or {Err}─ (at once when the token is valid)
//	          ◀─TokenReply{Wait: *Pending}────── (a refresh runs: park on it until it is resolved)
//	requester ──TokenRejected{Gen, Reply}─────▶ (after a 401: refresh only if Gen is still current)
//
// The token actor answers every message at once; a requester that must wait for a refresh parks on
// the refresh's Pending, which the actor resolves once for all of them. A requester whose context
// ends simply stops waiting: nothing needs to be withdrawn, and ten thousand parked requests are
// released by one channel close.
//
// The token actor talks to itself about the refresh it runs outside its mailbox (RefreshDue,
// RefreshDone, RefreshFailed) and publishes events (TokenRefreshed, SessionExpired) for subscribers.
//
// Nothing in this package imports another package of this module. Pending is the one value with
// behaviour: a future.
//
// Like package actors, it is the engine's internals and may change in any release. Programs need
// only the engine package, which re-exports the few types they meet (Tokens, the events, the errors).
package messages
