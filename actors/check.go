package actors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrInvalidRequest: a request RoundTrip cannot send as it is (no URL, no Header, no host, a method
// that is not an HTTP token). The caller gets it at once, as net/http's Transport returns its own
// errors for such requests; nothing is sent and no token is taken.
var ErrInvalidRequest = errors.New("engine: invalid request")

// check refuses the requests net/http's Transport refuses, before anything reads their fields: the
// rest of the request path (and its panic recovery, which prints the host) relies on a URL and a
// Header being there.
func check(req *http.Request) error {
	switch {
	case req == nil:
		return fmt.Errorf("%w: nil request", ErrInvalidRequest)
	case req.URL == nil:
		return fmt.Errorf("%w: nil URL", ErrInvalidRequest)
	case req.Header == nil:
		return fmt.Errorf("%w: nil Header", ErrInvalidRequest)
	case req.URL.Host == "":
		return fmt.Errorf("%w: no host in the URL", ErrInvalidRequest)
	case !validMethod(req.Method):
		return fmt.Errorf("%w: method %q", ErrInvalidRequest, req.Method)
	}
	return nil
}

// validMethod reports whether m is empty (GET) or an RFC 9110 token, as net/http requires.
func validMethod(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return true // the common ones, without a scan
	}
	return strings.IndexFunc(m, func(r rune) bool {
		return r >= 0x80 || r <= ' ' || r == 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) < 0
}
