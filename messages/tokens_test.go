package messages

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Tokens never print their secrets: not with any fmt verb, not inside a struct, not through slog.
func TestTokensAreRedacted(t *testing.T) {
	tok := Tokens{Access: "ACCESS-SECRET", Refresh: "REFRESH-SECRET", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("tokens", "t", tok, "msg", SetTokens{Tokens: tok}, "done", RefreshDone{Tokens: tok})
	outputs := []string{logged.String(), tok.String(), tok.GoString()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outputs = append(outputs, fmt.Sprintf(verb, tok), fmt.Sprintf(verb, SetTokens{Tokens: tok}), fmt.Sprintf(verb, &tok))
	}
	for _, out := range outputs {
		assert.NotContains(t, out, "SECRET", out)
	}
	assert.Equal(t, "Tokens{Access: set, Refresh: set, Expiry: 2030-01-02T03:04:05Z}", tok.String())
	assert.Equal(t, "Tokens{Access: none, Refresh: none, Expiry: unknown}", Tokens{}.String())
}
