package etcdstore

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// decodeErrors are the only sentences decode may answer with, numbers aside (a field name comes
// from stored's tags): whatever the stored bytes, none of them reaches an error.
var decodeErrors = map[string]bool{
	"the stored value is not JSON (syntax error at byte N of N)": true,
	`the stored value's field "access" has the wrong JSON type`:  true,
	`the stored value's field "refresh" has the wrong JSON type`: true,
	`the stored value's field "expiry" has the wrong JSON type`:  true,
	`the stored value's field "type" has the wrong JSON type`:    true,
	"the stored value is not a JSON object":                      true,
	"the stored value is JSON null":                              true,
	"the stored expiry is not an RFC N time":                     true,
}

var digits = regexp.MustCompile(`[0-9]+`)

// FuzzDecode: decode never panics, answers only its own sentences, and what it accepts encodes and
// decodes again to the same pair.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"access":"a","refresh":"r","expiry":"2030-01-02T03:04:05.123456789+02:00","type":"DPoP"}`,
		`{"access":"a","refresh":"r"}`,
		`{"access":"a","refresh":12}`,
		`{"expiry":"yesterday"}`,
		`null`, `[]`, `"x"`, `{`, ``, `{"access":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := decode(b)
		if err != nil {
			msg := digits.ReplaceAllString(err.Error(), "N")
			if !decodeErrors[msg] {
				t.Fatalf("decode(%q): an error of its own making expected, got %q", b, err)
			}
			return
		}
		again, err := encode(tok)
		if err != nil { // decode may give what encode refuses: strings with U+FFFD came from JSON escapes, always valid
			t.Fatalf("decode(%q) = %+v, which encode refuses: %v", b, tok, err)
		}
		back, err := decode(again)
		require.NoError(t, err)
		assert.Equal(t, tok.Access, back.Access)
		assert.Equal(t, tok.Refresh, back.Refresh)
		assert.Equal(t, tok.Type, back.Type)
		assert.True(t, tok.Expiry.Equal(back.Expiry))
	})
}

// FuzzEncode: every pair that encode accepts comes back whole; what it refuses is a string that
// is not UTF-8.
func FuzzEncode(f *testing.F) {
	f.Add("access", "refresh", "", int64(0))
	f.Add("a", "r", "DPoP", time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	f.Add("\xff", "r", "", int64(1))
	f.Fuzz(func(t *testing.T, access, refresh, typ string, nanos int64) {
		tok := engine.Tokens{Access: access, Refresh: refresh, Type: typ}
		if nanos != 0 {
			tok.Expiry = time.Unix(0, nanos).In(time.FixedZone("", int(nanos%50_000)))
		}
		b, err := encode(tok)
		if err != nil {
			require.False(t, utf8.ValidString(access) && utf8.ValidString(refresh) && utf8.ValidString(typ), "refused %+v: %v", tok, err)
			for _, s := range []string{access, refresh, typ} {
				if len(s) >= 4 {
					assert.NotContains(t, err.Error(), s)
				}
			}
			return
		}
		back, err := decode(b)
		require.NoError(t, err)
		assert.Equal(t, tok.Access, back.Access)
		assert.Equal(t, tok.Refresh, back.Refresh)
		assert.Equal(t, tok.Type, back.Type)
		assert.True(t, tok.Expiry.Equal(back.Expiry), "expiry %v came back %v", tok.Expiry, back.Expiry)
	})
}

func TestEncodeRefuses(t *testing.T) {
	for name, tok := range map[string]engine.Tokens{
		"access not UTF-8":  {Access: "SECRET\xff"},
		"refresh not UTF-8": {Refresh: "SECRET\xc3"},
		"type not UTF-8":    {Type: "\xfe"},
		"year 10000":        {Access: "SECRET", Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":           {Access: "SECRET", Expiry: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := encode(tok)
			require.Error(t, err)
			assert.False(t, strings.Contains(err.Error(), "SECRET"))
		})
	}
}
