package httpcache

import "strings"

// ParseETagList parses the value of an If-None-Match or ETag header (RFC 9110 §8.8.3 and §13.1.2): either
// "*" or a comma-separated list of entity-tags, each written "opaque" or W/"opaque", with optional spaces
// and tabs around the commas. Empty list elements ("a", , "b") are skipped, as RFC 9110 §5.6.1 asks of
// recipients. It returns the tags exactly as written (with W/ and quotes), or ["*"], and ok=false when
// the value is malformed or names nothing. It is a pure function, safe for concurrent use.
func ParseETagList(v string) (tags []string, ok bool) {
	v = trimOWS(v)
	if v == "*" {
		return []string{"*"}, true
	}
	for v != "" {
		v = strings.TrimLeft(v, " \t")
		if v == "" {
			break
		}
		if v[0] == ',' {
			v = v[1:]
			continue
		}
		n := entityTagLen(v)
		if n == 0 {
			return nil, false
		}
		tags = append(tags, v[:n])
		v = strings.TrimLeft(v[n:], " \t")
		if v != "" && v[0] != ',' {
			return nil, false
		}
	}
	if len(tags) == 0 {
		return nil, false
	}
	return tags, true
}

// WeakMatch reports whether two entity-tags match under the weak comparison of RFC 9110 §8.8.3.2: their
// opaque parts are equal, whether either is marked weak or not. A value that is not a single well-formed
// entity-tag (including "*") matches nothing. It is a pure function, safe for concurrent use.
func WeakMatch(a, b string) bool {
	oa, okA := opaqueTag(a)
	ob, okB := opaqueTag(b)
	return okA && okB && oa == ob
}

// validETag reports whether v, trimmed of spaces, is exactly one well-formed entity-tag, and returns it.
func validETag(v string) (string, bool) {
	v = trimOWS(v)
	if v == "" || entityTagLen(v) != len(v) {
		return "", false
	}
	return v, true
}

// opaqueTag returns the quoted part of a single entity-tag, without its W/ prefix.
func opaqueTag(v string) (string, bool) {
	if entityTagLen(v) != len(v) || v == "" {
		return "", false
	}
	return strings.TrimPrefix(v, "W/"), true
}

// entityTagLen returns the length of the entity-tag at the start of s, or 0 when s does not start with
// one. entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text. The W is
// case-sensitive.
func entityTagLen(s string) int {
	i := 0
	if strings.HasPrefix(s, "W/") {
		i = 2
	}
	if i >= len(s) || s[i] != '"' {
		return 0
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return j + 1
		case c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80:
		default:
			return 0
		}
	}
	return 0
}

// trimOWS removes the optional whitespace (spaces and tabs) of RFC 9110 §5.6.3 from both ends of s.
func trimOWS(s string) string { return strings.Trim(s, " \t") }
