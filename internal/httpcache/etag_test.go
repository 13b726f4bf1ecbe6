package httpcache

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseETagList(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
		ok   bool
	}{
		{"one strong", `"abc"`, []string{`"abc"`}, true},
		{"one weak", `W/"abc"`, []string{`W/"abc"`}, true},
		{"empty opaque", `""`, []string{`""`}, true},
		{"star", `*`, []string{"*"}, true},
		{"star with spaces", " \t* ", []string{"*"}, true},
		{"list", `"a","b"`, []string{`"a"`, `"b"`}, true},
		{"list with spaces and tabs", " \"a\" ,\tW/\"b\" , \"c\"\t", []string{`"a"`, `W/"b"`, `"c"`}, true},
		{"empty elements skipped", `, "a", , "b",`, []string{`"a"`, `"b"`}, true},
		{"comma inside opaque", `"a,b", "c"`, []string{`"a,b"`, `"c"`}, true},
		{"obs-text", "\"caf\xc3\xa9\"", []string{"\"caf\xc3\xa9\""}, true},
		{"empty", ``, nil, false},
		{"only commas", ` , ,`, nil, false},
		{"unquoted", `abc`, nil, false},
		{"unterminated", `"abc`, nil, false},
		{"lower-case weak", `w/"abc"`, nil, false},
		{"weak without quotes", `W/abc`, nil, false},
		{"space inside", `"a b"`, nil, false},
		{"missing comma", `"a" "b"`, nil, false},
		{"junk after tag", `"a"x`, nil, false},
		{"star in a list", `"a", *`, nil, false},
		{"two stars", `*, *`, nil, false},
		{"control character", "\"a\x01\"", nil, false},
		{"DEL", "\"a\x7f\"", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseETagList(tc.in)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestWeakMatch(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`"1"`, `"1"`, true},
		{`W/"1"`, `"1"`, true},
		{`W/"1"`, `W/"1"`, true},
		{`"1"`, `"2"`, false},
		{`W/"1"`, `W/"2"`, false},
		{`*`, `"1"`, false},
		{`1`, `1`, false},
		{``, ``, false},
		{`"1", "2"`, `"1", "2"`, false},
	} {
		assert.Equal(t, tc.want, WeakMatch(tc.a, tc.b), "%s vs %s", tc.a, tc.b)
		assert.Equal(t, tc.want, WeakMatch(tc.b, tc.a), "%s vs %s", tc.b, tc.a)
	}
}

func FuzzParseETagList(f *testing.F) {
	for _, seed := range []string{
		`"a"`, `W/"a"`, `*`, ` "a" , W/"b" `, `"a,b"`, `,,`, `"a`, `W/`, `W/"`, "\"\xff\"", `"a" "b"`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tags, ok := ParseETagList(v)
		if !ok {
			assert.Nil(t, tags)
			return
		}
		assert.NotEmpty(t, tags)
		for _, tag := range tags {
			if tag == "*" {
				assert.Equal(t, []string{"*"}, tags, "* stands alone")
				continue
			}
			valid := (strings.HasPrefix(tag, `"`) || strings.HasPrefix(tag, `W/"`)) &&
				strings.HasSuffix(tag, `"`) && len(strings.TrimPrefix(tag, "W/")) >= 2
			assert.True(t, valid, "tag %q", tag)
			assert.True(t, strings.Contains(v, tag), "tag %q is a piece of the input", tag)
			assert.True(t, WeakMatch(tag, tag), "tag %q matches itself", tag)
		}
	})
}
