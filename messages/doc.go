// Package messages holds the protocol spoken between the engine's actors: plain value types, sent by
// value, that carry no behaviour of their own.
//
// The conversation of one logical request with the token actor is:
//
//	requester ──NeedToken{ID, Reply}──────────▶ token actor
//	          ◀─TokenReply{Token, Gen} or {Err}─ (at once when valid, later when parked behind a refresh)
//	requester ──TokenRejected{Gen, Reply}─────▶ (after a 401: refresh only if Gen is still current)
//	requester ──CancelWait{ID}────────────────▶ (its context ended while parked: leave the queue)
//
// The token actor talks to itself about the refresh it runs outside its mailbox (RefreshDue,
// RefreshDone, RefreshFailed) and publishes events (TokenRefreshed, SessionExpired) for subscribers.
//
// Nothing in this package imports another package of this module.
package messages
