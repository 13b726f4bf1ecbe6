package tokenwire

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzSecret turns fuzzed bytes into a secret that no fixed part of an error text can contain, so
// that finding it in an error means the parser leaked it. It is never shorter than
// redact.MinSecret: shorter values are deliberately not redacted.
func fuzzSecret(b []byte) string { return "S3cr3t-x" + hex.EncodeToString(b) }

var fuzzContentTypes = []string{"", "application/json", "application/x-www-form-urlencoded",
	"text/plain; charset=utf-8", "text/html", "application/problem+json", "multipart/form-data; boundary=\x00"}

// FuzzParseAnswer: whatever a token endpoint answers with a 2xx (JSON, form fields, garbage, huge,
// invalid UTF-8, control characters), Parse does not panic, accepts no token that cannot be sent,
// and every error it returns is valid UTF-8 and free of the secrets it was given, even when the
// answer echoes them.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","refresh_token":"r","expires_in":3600,"token_type":"Bearer"}`), uint8(0), true, []byte("k"))
	f.Add([]byte(`{"accessToken":"`+jwt(`{"exp":1e9}`)+`","refreshToken":"r\u0000"}`), uint8(1), false, []byte("k"))
	f.Add([]byte(`{"access_token":"a","expires_in":"1e400"}`), uint8(1), true, []byte{})
	f.Add([]byte("access_token=a%0D%0Ab&token_type=bearer&expires_in=-1"), uint8(2), true, []byte{1})
	f.Add([]byte("access_token=\xff\xfe&refresh_token=%C3%A9"), uint8(3), true, []byte{2})
	f.Add([]byte("<html><body>Wi-Fi login</body></html>"), uint8(4), true, []byte{})
	f.Add([]byte(`{"access_token":"a","token_type":"DPoP S3cr3t-x05 \xff"}`), uint8(1), true, []byte{5})
	f.Add([]byte(`{"access_token":"a","token_type":"`+strings.Repeat("é", 40)+`"}`), uint8(1), true, []byte{})
	f.Add([]byte(`{"access_token":"`+strings.Repeat("A", 4096)+`="}`), uint8(0), true, []byte{})
	f.Fuzz(func(t *testing.T, body []byte, ctype uint8, oauth bool, secretBytes []byte) {
		format := JSON
		if oauth {
			format = OAuth2
		}
		secret := fuzzSecret(secretBytes)
		// The answer may echo the secret anywhere the fuzzer put its marker.
		body = []byte(strings.ReplaceAll(string(body), "S3cr3t-x05", secret))
		a, err := Parse(format, fuzzContentTypes[int(ctype)%len(fuzzContentTypes)], body, time.Unix(1e9, 0), secret)
		if err != nil {
			checkErrorText(t, err.Error(), secret)
			return
		}
		if CheckAccessToken(a.Tokens.Access) != nil || CheckRefreshToken(a.Tokens.Refresh) != nil {
			t.Fatalf("accepted a token that cannot be sent: %q / %q", a.Tokens.Access, a.Tokens.Refresh)
		}
		if a.Type != BearerType {
			t.Fatalf("accepted token type %q", a.Type)
		}
	})
}

// FuzzEndpointError: whatever a token endpoint answers with an error status, the *EndpointError is
// built without a panic, and its text is valid UTF-8 and free of the secrets given.
func FuzzEndpointError(f *testing.F) {
	f.Add(400, uint8(1), []byte(`{"error":"invalid_grant","error_description":"token S3cr3t-x05 revoked"}`), []byte{5})
	f.Add(401, uint8(2), []byte("error=invalid_client&error_description=S3cr3t-x05%0A"), []byte{5})
	f.Add(503, uint8(0), []byte(`{"message":"`+strings.Repeat("日本", 200)+`"}`), []byte{})
	f.Add(400, uint8(1), []byte(`{"error":"`+strings.Repeat("x", 60)+`S3cr3t-x05"}`), []byte{5})
	f.Add(500, uint8(4), []byte("\xff\xfe<html>"), []byte{})
	f.Fuzz(func(t *testing.T, status int, ctype uint8, body []byte, secretBytes []byte) {
		secret := fuzzSecret(secretBytes)
		body = []byte(strings.ReplaceAll(string(body), "S3cr3t-x05", secret))
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("Content-Type", fuzzContentTypes[int(ctype)%len(fuzzContentTypes)])
		e := endpointError(resp, body, secret)
		checkErrorText(t, e.Error(), secret)
		checkErrorText(t, e.Code, secret)
		checkErrorText(t, e.Description, secret)
	})
}

func checkErrorText(t *testing.T, text, secret string) {
	t.Helper()
	if !utf8.ValidString(text) {
		t.Fatalf("error text is not valid UTF-8: %q", text)
	}
	if strings.Contains(text, secret) {
		t.Fatalf("error text holds the secret: %q", text)
	}
}
