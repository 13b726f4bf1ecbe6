package engine

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// The one error parser never panics, keeps the status, never returns more than a clipped message,
// and every text it shows is valid UTF-8 and free of the secret it was given (echoed anywhere in
// the body), whatever the content type and body.
func FuzzParseAPIError(f *testing.F) {
	f.Add("application/problem+json", `{"type":"t","title":"Bad","status":422,"detail":"d","x":[1]}`, 422)
	f.Add("application/problem+json", `{"title":1,"detail":{"a":2}}`, 400)
	f.Add("application/json", `{"message":"m","code":"c"}`, 409)
	f.Add("application/json", `{"error":"invalid_request","error_description":"bad"}`, 400)
	f.Add("application/json", `{"message":"cut`, 400)
	f.Add("", `[1,2,3]`, 500)
	f.Add("text/plain; charset=utf-8", "  down  ", 502)
	f.Add("text/html", "<html>oops</html>", 503)
	f.Add("application/vnd.api+json", `{"errors":[{"detail":"x"}]}`, 404)
	f.Add("application/json", "\xff\xfe", 500)
	f.Add("application/problem+json", `{"title":"SECRET-x","detail":"é SECRET-x","token":"SECRET-x","n":1}`, 403)
	f.Add("text/plain", strings.Repeat("é", 255)+"SECRET-x", 401)
	f.Add("application/problem+json", `{"title":"t","sent":{"\u0053ECRET-x":["\u0053ECRET-x-0123456789"]}}`, 401)
	f.Fuzz(func(t *testing.T, contentType, body string, status int) {
		const secret = "SECRET-x-0123456789"
		body = strings.ReplaceAll(body, "SECRET-x", secret)
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("Content-Type", contentType)
		resp.Header.Set("Retry-After", "7")
		e := parseAPIError(resp, []byte(body), secret)
		texts := []string{e.Error(), e.Code, e.Message}
		if p := e.Problem; p != nil {
			texts = append(texts, p.Type, p.Title, p.Detail, p.Instance)
			for _, v := range p.Extensions {
				var decoded any
				_ = json.Unmarshal(v, &decoded) // a secret spelled with escapes shows once decoded
				texts = append(texts, string(v), fmt.Sprint(decoded))
			}
		}
		for _, text := range texts {
			if strings.Contains(text, secret) {
				t.Fatalf("the secret reached the error: %q", text)
			}
		}
		for _, text := range texts[:3] {
			if !utf8.ValidString(text) {
				t.Fatalf("not UTF-8: %q", text)
			}
		}
		if e.Status != status {
			t.Fatalf("status %d became %d", status, e.Status)
		}
		if len(e.Message) > 512+len("…") || len(e.Code) > 512+len("…") {
			t.Fatalf("message of %d bytes or code of %d bytes is not clipped", len(e.Message), len(e.Code))
		}
		if e.Message != "" && !utf8.ValidString(e.Message) {
			t.Fatalf("message is not UTF-8: %q", e.Message)
		}
		if e.RetryAfter.Seconds() != 7 {
			t.Fatalf("Retry-After lost: %v", e.RetryAfter)
		}
		_ = e.Error()
		if strings.Contains(contentType, "problem+json") && e.Problem != nil && e.Problem.Extensions != nil {
			for _, k := range []string{"type", "title", "status", "detail", "instance"} {
				if _, ok := e.Problem.Extensions[k]; ok {
					t.Fatalf("member %q kept as an extension", k)
				}
			}
		}
	})
}
