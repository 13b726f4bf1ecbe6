// Package httpx holds the small HTTP facts that several stages of the engine need and must agree on:
// which request headers carry credentials, how a host:port splits, whether a request carries an
// Idempotency-Key. One copy of each, so that the cache, the redirect rules and the telemetry never
// disagree about them.
package httpx

import (
	"net/http"
	"strings"
)

// IdempotencyKey is the header that names one logical request across its attempts.
const IdempotencyKey = "Idempotency-Key"

// credentialHeaders are the request headers that carry a caller's identity: standard ones and the
// common API-key spellings. Canonical form.
var credentialHeaders = [...]string{
	"Authorization",
	"Proxy-Authorization",
	"Cookie",
	"Cookie2",
	"X-Api-Key",
	"Api-Key",
	"X-Auth-Token",
	"X-Access-Token",
	"X-Goog-Api-Key",
	"X-Amz-Security-Token",
	"Ocp-Apim-Subscription-Key",
}

// CredentialHeaders returns the built-in list of credential headers, canonical form. The caller may
// not modify it.
func CredentialHeaders() []string { return credentialHeaders[:] }

// credentialWords are the words that make a header name look like a credential's (X-Tenant-Token,
// X-Session-Id, X-Signature, ...): APIs invent their own names, and a credential header that is
// missed is shared between users by the cache and followed across origins by redirects. Lower case.
var credentialWords = [...]string{"key", "token", "auth", "secret", "session", "signature", "password", "credential"}

// notCredentials are names that hold a credential word but no credential. Lower case.
var notCredentials = [...]string{"idempotency-key", "x-idempotency-key", "sec-websocket-key"}

// IsCredential reports whether the header named name (any spelling) carries credentials: one of the
// built-in list, one of extra (the engine's configured secret header names), or any name containing
// (in any case) key, token, auth, secret, session, signature, password or credential, except a few
// known non-credentials (Idempotency-Key, Sec-WebSocket-Key). It errs on the side of a credential:
// a header taken for one is only kept out of shared caches and off other origins.
func IsCredential(name string, extra ...string) bool {
	for _, c := range credentialHeaders {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	for _, c := range extra {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	for _, w := range credentialWords {
		if containsFold(name, w) {
			for _, n := range notCredentials {
				if strings.EqualFold(name, n) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// containsFold reports whether s contains word (lower-case ASCII) in any case, without allocating.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(word)], word) {
			return true
		}
	}
	return false
}

// SplitHostPort splits host[:port] as url.URL's Hostname and Port do (brackets of an IPv6 literal
// removed), without allocating. port is "" when absent.
func SplitHostPort(hostport string) (host, port string) {
	host = hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, port
}

// HasIdempotencyKey reports whether h carries a non-empty Idempotency-Key (any spelling of the name).
func HasIdempotencyKey(h http.Header) bool {
	if v := h.Get(IdempotencyKey); v != "" {
		return true
	}
	for k, v := range h {
		if strings.EqualFold(k, IdempotencyKey) && len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}
