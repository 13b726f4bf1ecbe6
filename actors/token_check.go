package actors

import (
	"errors"
	"fmt"

	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/internal/tokenwire"
	"github.com/resilientclient/resilient/messages"
)

// ErrBadScheme is wrapped by CheckTokens' error for a Tokens.Type that is not an HTTP token.
var ErrBadScheme = errors.New("engine: the token type is not a valid Authorization scheme")

// CheckTokens reports a pair that cannot be sent as it is: an access token outside RFC 6750's
// b64token, a refresh token with a control or non-ASCII byte, or a Type that is not an RFC 9110
// token. An empty access token passes (a pair that only holds a refresh token). Every pair is
// checked before it is saved or installed: one bad pair would otherwise fail every request. The
// error never holds a token.
func CheckTokens(t messages.Tokens) error {
	if t.Access != "" {
		if err := tokenwire.CheckAccessToken(t.Access); err != nil {
			return err
		}
	}
	if err := tokenwire.CheckRefreshToken(t.Refresh); err != nil {
		return err
	}
	for i := 0; i < len(t.Type); i++ {
		if !tchar(t.Type[i]) {
			return fmt.Errorf("%w (byte %d)", ErrBadScheme, i)
		}
	}
	return nil
}

// tchar reports whether c may appear in an RFC 9110 token.
func tchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// checkAnswer checks a refresh function's answer: a refused one is a failed refresh that may pass
// (it wraps tokenwire.ErrMalformedAnswer), carrying the answer's refresh token when it is usable.
func checkAnswer(t messages.Tokens) error {
	err := CheckTokens(t)
	if err == nil && t.Access == "" {
		err = &tokenwire.InvalidTokenError{Field: "access token", Offset: -1}
	}
	if err == nil {
		return nil
	}
	if !errors.Is(err, tokenwire.ErrMalformedAnswer) {
		err = fmt.Errorf("%w: %w", tokenwire.ErrMalformedAnswer, err)
	}
	if tokenwire.CheckRefreshToken(t.Refresh) != nil {
		return err
	}
	return tokenwire.Refused(err, t.Refresh) // (no wrapper for an empty refresh token)
}

// scrubbedError is an error whose text has the tokens taken out; Unwrap keeps errors.Is and
// errors.As working on what it wraps.
type scrubbedError struct {
	err  error
	text string
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrubbed is err with secrets redacted from its text (err itself when none appears in it).
func scrubbed(err error, secrets ...string) error {
	text := err.Error()
	clean := redact.Secrets(text, secrets...)
	if clean == text {
		return err
	}
	return &scrubbedError{err: err, text: clean}
}
