package etcdstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/resilientclient/resilient/engine"
)

// stored is a pair as it is kept in etcd: a JSON object, readable with etcdctl.
type stored struct {
	Access  string `json:"access"`
	Refresh string `json:"refresh"`
	Expiry  string `json:"expiry,omitempty"` // RFC 3339 in UTC with nanoseconds; absent for a pair with no expiry
	Type    string `json:"type,omitempty"`
}

// encode refuses what would not come back as it went in: encoding/json turns bytes that are not
// UTF-8 into U+FFFD, and RFC 3339 has only years 0 to 9999. A token stored altered would be
// refused by the server; better that Commit fails.
func encode(t engine.Tokens) ([]byte, error) {
	if !utf8.ValidString(t.Access) || !utf8.ValidString(t.Refresh) || !utf8.ValidString(t.Type) {
		return nil, errors.New("the pair holds a string that is not UTF-8, which JSON cannot keep")
	}
	s := stored{Access: t.Access, Refresh: t.Refresh, Type: t.Type}
	if !t.Expiry.IsZero() {
		s.Expiry = t.Expiry.UTC().Format(time.RFC3339Nano) // UTC: an offset of seconds (old zones) has no RFC 3339 form
		if back, err := time.Parse(time.RFC3339Nano, s.Expiry); err != nil || !back.Equal(t.Expiry) {
			return nil, fmt.Errorf("the expiry's year %d is outside RFC 3339's 0 to 9999", t.Expiry.Year())
		}
	}
	return json.Marshal(s)
}

// decode reads a stored pair. Its errors describe what is wrong without quoting the value: the
// errors of encoding/json and time.Parse quote the bytes they stumbled on, which may be a token.
func decode(b []byte) (engine.Tokens, error) {
	var s *stored
	if err := json.Unmarshal(b, &s); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return engine.Tokens{}, fmt.Errorf("the stored value is not JSON (syntax error at byte %d of %d)", syntax.Offset, len(b))
		case errors.As(err, &typ) && typ.Field != "":
			return engine.Tokens{}, fmt.Errorf("the stored value's field %q has the wrong JSON type", typ.Field)
		default:
			return engine.Tokens{}, errors.New("the stored value is not a JSON object")
		}
	}
	if s == nil {
		return engine.Tokens{}, errors.New("the stored value is JSON null")
	}
	t := engine.Tokens{Access: s.Access, Refresh: s.Refresh, Type: s.Type}
	if s.Expiry != "" {
		exp, err := time.Parse(time.RFC3339Nano, s.Expiry)
		if err != nil {
			return engine.Tokens{}, errors.New("the stored expiry is not an RFC 3339 time")
		}
		t.Expiry = exp
	}
	return t, nil
}
