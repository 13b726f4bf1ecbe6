package tokenwire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/resilientclient/resilient/messages"
)

// BearerType is the token type the engine sends (RFC 6750), and the type of an answer that names none.
const BearerType = "Bearer"

// maxExpiresIn is the longest lifetime taken at its word: a longer one is a broken answer, not a
// token that never needs renewing.
const maxExpiresIn = 10 * 365 * 24 * 3600

// Answer is a token endpoint's successful answer, checked: both tokens can be sent as they are.
type Answer struct {
	Tokens messages.Tokens
	// Type is the scheme to send Tokens.Access with in the Authorization header. It is always
	// BearerType today: an answer naming another type (DPoP, MAC, ...) is refused with a
	// *TokenTypeError, and one naming none is taken as Bearer.
	Type string
}

// wireAnswer is the union of both formats' fields.
type wireAnswer struct {
	AccessToken   string      `json:"access_token"`
	RefreshToken  string      `json:"refresh_token"`
	ExpiresIn     json.Number `json:"expires_in"`
	TokenType     string      `json:"token_type"`
	AccessToken2  string      `json:"accessToken"`
	RefreshToken2 string      `json:"refreshToken"`
	ExpiresIn2    json.Number `json:"expiresIn"`
}

// Parse reads and checks a successful token answer in format f. The body is JSON, or, as
// golang.org/x/oauth2 accepts it, application/x-www-form-urlencoded (or text/plain) form fields.
// Form values are checked like JSON ones.
// The expiry comes from expires_in (seconds from now) when present, else from the access token's JWT
// exp claim, else it is unknown (zero). secrets (the tokens and client secret the request carried)
// are kept out of every error.
//
// Errors: ErrMalformedAnswer for an answer it cannot use (not JSON or form, no access token, a bad
// expires_in, a token with characters that cannot be sent: an *InvalidTokenError), and a
// *TokenTypeError for a token type other than Bearer. When the refused answer held a sendable refresh
// token, the error is a *RefusedAnswerError carrying it: the caller must keep it, not replay the old.
func Parse(f Format, contentType string, body []byte, now time.Time, secrets ...string) (Answer, error) {
	var a wireAnswer
	if isForm(contentType, body) {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return Answer{}, fmt.Errorf("%w: the form cannot be parsed", ErrMalformedAnswer)
		}
		a = wireAnswer{AccessToken: vals.Get("access_token"), RefreshToken: vals.Get("refresh_token"),
			ExpiresIn: json.Number(vals.Get("expires_in")), TokenType: vals.Get("token_type"),
			AccessToken2: vals.Get("accessToken"), RefreshToken2: vals.Get("refreshToken"),
			ExpiresIn2: json.Number(vals.Get("expiresIn"))}
	} else if err := json.Unmarshal(body, &a); err != nil {
		return Answer{}, fmt.Errorf("%w: %s", ErrMalformedAnswer, jsonProblem(err, contentType))
	}
	var t messages.Tokens
	var expiresIn json.Number
	switch f {
	case OAuth2:
		t.Access, t.Refresh, expiresIn = a.AccessToken, a.RefreshToken, a.ExpiresIn
	case JSON:
		t.Access, t.Refresh, expiresIn = a.AccessToken2, a.RefreshToken2, a.ExpiresIn2
	default:
		return Answer{}, fmt.Errorf("unknown refresh format %v", f)
	}
	if err := CheckRefreshToken(t.Refresh); err != nil {
		return Answer{}, err
	}
	// From here on the refresh token is sendable: a server that rotates has already spent the one
	// the request carried, so a refused answer hands the new one back with its error.
	if t.Access == "" {
		return Answer{}, Refused(fmt.Errorf("%w: no access token", ErrMalformedAnswer), t.Refresh)
	}
	typ, err := tokenType(a.TokenType, secrets)
	if err != nil {
		return Answer{}, Refused(err, t.Refresh)
	}
	if err := CheckAccessToken(t.Access); err != nil {
		return Answer{}, Refused(err, t.Refresh)
	}
	if expiresIn != "" {
		secs, err := expiresIn.Float64()
		if err != nil || secs < 0 || secs > maxExpiresIn {
			return Answer{}, Refused(fmt.Errorf("%w: expires_in is not a number of seconds between 0 and %d", ErrMalformedAnswer, maxExpiresIn), t.Refresh)
		}
		if secs > 0 {
			t.Expiry = now.Add(time.Duration(secs * float64(time.Second)))
		}
	}
	if t.Expiry.IsZero() {
		if exp, ok := JWTExpiry(t.Access); ok {
			t.Expiry = exp
		}
	}
	return Answer{Tokens: t, Type: typ}, nil
}

// RefusedAnswerError is a 2xx token answer the engine refused (see Parse) that held a sendable
// refresh token. Its Error and Unwrap are those of the refusal; the refresh token is only reachable
// through RotatedRefreshToken (it implements messages.RotatedRefresh), never in the text.
type RefusedAnswerError struct {
	err     error
	refresh string
}

func (e *RefusedAnswerError) Error() string { return e.err.Error() }

// Unwrap returns the refusal, so errors.Is and errors.As see through it.
func (e *RefusedAnswerError) Unwrap() error { return e.err }

// RotatedRefreshToken is the refresh token the refused answer held.
func (e *RefusedAnswerError) RotatedRefreshToken() string { return e.refresh }

// Refused wraps err, the refusal of an answer, with the answer's refresh token when it had one: the
// one place that makes a RefusedAnswerError (the token actor uses it for refresh functions' answers).
func Refused(err error, refresh string) error {
	if refresh == "" {
		return err
	}
	return &RefusedAnswerError{err: err, refresh: refresh}
}

// isForm reports whether a token answer is form fields rather than JSON: its Content-Type is one
// golang.org/x/oauth2 reads as a form. Unlike x/oauth2, a text/plain body that is valid JSON is read
// as JSON: servers that send JSON without a Content-Type get text/plain from content sniffing.
func isForm(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/x-www-form-urlencoded" || mt == "text/plain" && !json.Valid(body)
}

// tokenType is the scheme an answer's token_type names: Bearer, whatever its case, when it names
// one the engine can send or none at all.
func tokenType(typ string, secrets []string) (string, error) {
	if typ == "" || strings.EqualFold(typ, BearerType) {
		return BearerType, nil
	}
	return "", &TokenTypeError{Type: safeText(typ, 32, secrets)}
}

// CheckAccessToken reports, as an *InvalidTokenError, an access token that cannot be sent as
// "Authorization: Bearer <token>": empty, or with a character outside RFC 6750's b64token
// (letters, digits, "-._~+/", then "=" only at the end). A CR or LF there would make net/http refuse
// every request that carries it; a space or a non-ASCII byte would be read as something else.
func CheckAccessToken(token string) error {
	if token == "" {
		return &InvalidTokenError{Field: "access token", Offset: -1}
	}
	padding := false
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '=':
			padding = true
		case !padding && b64tokenChar(c):
		default:
			return &InvalidTokenError{Field: "access token", Offset: i, Char: describeByte(c)}
		}
	}
	if padding && token[0] == '=' {
		return &InvalidTokenError{Field: "access token", Offset: 0, Char: describeByte('=')}
	}
	return nil
}

// CheckRefreshToken reports, as an *InvalidTokenError, a refresh token with a character outside
// RFC 6749's VSCHAR (printable ASCII and space): control characters, CR, LF and non-ASCII bytes.
// An empty refresh token passes (the answer had none).
func CheckRefreshToken(token string) error {
	for i := 0; i < len(token); i++ {
		if c := token[i]; c < 0x20 || c > 0x7e {
			return &InvalidTokenError{Field: "refresh token", Offset: i, Char: describeByte(c)}
		}
	}
	return nil
}

func b64tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// describeByte names a byte a token must not have, without quoting the token around it.
func describeByte(c byte) string {
	switch {
	case c == '\r':
		return "CR"
	case c == '\n':
		return "LF"
	case c == ' ':
		return "space"
	case c < 0x20 || c == 0x7f:
		return "control character 0x" + strconv.FormatUint(uint64(c), 16)
	case c >= 0x80:
		return "non-ASCII byte 0x" + strconv.FormatUint(uint64(c), 16)
	default:
		return strconv.QuoteRune(rune(c))
	}
}

// jsonProblem describes a JSON error without quoting the input (which may hold a token).
func jsonProblem(err error, contentType string) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if mt, _, _ := mime.ParseMediaType(contentType); mt != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			// Most often a captive portal's or a proxy's page.
			return "the answer is " + safeText(mt, 64, nil) + ", not JSON"
		}
		return "invalid JSON at offset " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		return "field " + typ.Field + " has the wrong type"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return "invalid JSON"
	}
}
