package actors

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/resilientclient/resilient/internal/httpx"
	"github.com/resilientclient/resilient/internal/redact"
	"github.com/resilientclient/resilient/messages"
)

// panicked reports a panic to the supervisor (which logs it with its stack) and makes the caller's
// error, which carries the panic's value itself: the log is off by default, and a caller who sees
// only "request panicked" cannot tell a nil transport from a bug in a hook. The value is printed
// with every credential the request carried cut out (see scrubPanic).
func (r *Requester) panicked(ctx context.Context, req *http.Request, st *attemptState, p any) error {
	value := scrubPanic(fmt.Sprint(p), r.sentSecrets(req, st))
	m := messages.RequestPanicked{Method: req.Method, Host: req.URL.Host, Value: value, Stack: debug.Stack(),
		Trace: trace.SpanContextFromContext(ctx)}
	if r.Supervisor != nil {
		r.Supervisor.reportPanic(m)
	}
	return fmt.Errorf("%w: %s %s: %s", messages.ErrRequestPanicked, req.Method, req.URL.Host, value)
}

// sentSecrets are the credentials a panic's value or an error answer may have printed: the tokens
// the engine sent (with and without their scheme), the secret headers, and the caller's own
// credential headers.
func (r *Requester) sentSecrets(req *http.Request, st *attemptState) []string {
	var out []string
	for _, auth := range [...]string{st.token, st.rejected} {
		if auth != "" {
			out = append(out, auth)
			if _, tok, ok := strings.Cut(auth, " "); ok {
				out = append(out, tok)
			}
		}
	}
	names := make([]string, 0, len(r.Secrets))
	for _, s := range r.Secrets {
		out = append(out, s.Value)
		names = append(names, s.Name)
	}
	for k, vs := range req.Header {
		if httpx.IsCredential(k, names...) {
			out = append(out, vs...)
		}
	}
	return out
}

// maxPanicText bounds the panic's text in the error and the log.
const maxPanicText = 512

// scrubPanic is v scrubbed by redact.Secrets (the one rule for every text), clipped. A panic's text
// is arbitrary (a whole header map, say), so a secret too short for redact.Secrets to cut out
// cleanly that still occurs in it withholds the text whole rather than leaving the secret there.
func scrubPanic(v string, secrets []string) string {
	v = redact.Secrets(v, secrets...)
	for _, s := range secrets {
		if s != "" && len(s) < redact.MinSecret && strings.Contains(v, s) {
			return "(value withheld: it contains a credential)"
		}
	}
	return redact.Clip(v, maxPanicText)
}
