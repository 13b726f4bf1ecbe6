package engine

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	"github.com/resilientclient/resilient/actors"
)

// ErrInvalidConfig is wrapped by every error New and NewPublic return for bad options.
var ErrInvalidConfig = errors.New("engine: invalid configuration")

// ConfigError says which option is wrong and why. It wraps ErrInvalidConfig. New and NewPublic
// report every problem they find at once, joined with errors.Join: errors.As finds the first.
type ConfigError struct {
	Option string // the option's function name, such as "WithBaseURL"
	Reason string // what is wrong with its value
}

// Error names the option and what is wrong with it.
func (e *ConfigError) Error() string {
	return "engine: invalid configuration: " + e.Option + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

func configErr(option, format string, args ...any) error {
	return &ConfigError{Option: option, Reason: fmt.Sprintf(format, args...)}
}

// validated holds what New derives from a checked config.
type validated struct {
	base    *url.URL
	origins []actors.Origin
	policy  actors.RetryPolicy
}

// check validates the options, reporting every problem at once (joined).
func (c *config) check(public bool) (validated, error) {
	var v validated
	errs := append([]error(nil), c.errs...)
	errs = append(errs, c.checkOrigins(public, &v)...)
	errs = append(errs, c.checkLimits()...)
	errs = append(errs, c.checkSecrets(public, len(v.origins) > 0)...)
	errs = append(errs, c.checkTelemetry()...)
	errs = append(errs, c.checkGrant(public)...)
	if public {
		errs = append(errs, c.checkPublic()...)
	} else {
		errs = append(errs, c.checkRefresh(v.base)...)
	}
	policy, err := c.retryPolicy()
	if err != nil {
		errs = append(errs, err)
	}
	v.policy = policy
	return v, errors.Join(errs...)
}

// checkOrigins parses the base URL and WithOrigins into the origins that receive credentials.
func (c *config) checkOrigins(public bool, v *validated) []error {
	var errs []error
	switch {
	case c.baseURL == "" && c.baseURLGiven:
		errs = append(errs, configErr("WithBaseURL", "empty URL"))
	case c.baseURL == "" && !public:
		errs = append(errs, configErr("WithBaseURL", "required: it names the API that receives the token"))
	case c.baseURL != "":
		u, o, err := parseOrigin(c.baseURL)
		if err != nil {
			errs = append(errs, configErr("WithBaseURL", "%v", err))
		} else {
			v.base = u
			v.origins = append(v.origins, o)
		}
	}
	for i, raw := range c.origins {
		_, o, err := parseOrigin(raw)
		if err != nil {
			errs = append(errs, configErr("WithOrigins", "origin %d of %d: %v", i+1, len(c.origins), err))
			continue
		}
		v.origins = append(v.origins, o)
	}
	return errs
}

// checkLimits rejects durations and sizes that cannot mean anything.
func (c *config) checkLimits() []error {
	var errs []error
	if c.cluster != nil && (c.store != nil || c.families != nil) {
		errs = append(errs, configErr("WithCluster", "the Coordinator keeps every family's credentials: give no WithTokenStore or WithFamilyStore with it"))
	}
	if c.maxRefreshes == 0 {
		errs = append(errs, configErr("WithMaxConcurrentRefreshes", "0 would never refresh: give a positive bound, or a negative value for none"))
	}
	if c.familyIdle == 0 {
		errs = append(errs, configErr("WithFamilyIdleTimeout", "0 would passivate a family between two requests: give a positive time, or a negative value to never passivate"))
	}
	if c.refreshTimeout <= 0 {
		errs = append(errs, configErr("WithRefreshTimeout", "%v: a refresh needs some time", c.refreshTimeout))
	}
	if c.maxTokenBytes <= 0 {
		errs = append(errs, configErr("WithMaxTokenResponseBytes", "%d: no token answer would fit", c.maxTokenBytes))
	}
	if c.maxErrorBytes < 0 {
		errs = append(errs, configErr("WithMaxErrorBodyBytes", "negative limit %d (0 reads no error body)", c.maxErrorBytes))
	}
	return errs
}

// checkSecrets validates WithSecretHeader: a valid, unique name with a non-empty value, and an
// origin to send it to.
func (c *config) checkSecrets(public, haveOrigins bool) []error {
	var errs []error
	seen := map[string]bool{}
	for _, h := range c.secrets {
		switch {
		case !validHeaderName(h.Name):
			errs = append(errs, configErr("WithSecretHeader", "%q is not a valid header name", h.Name))
		case h.Value == "":
			errs = append(errs, configErr("WithSecretHeader", "empty value for %s", h.Name))
		case strings.ContainsAny(h.Value, "\r\n\x00"):
			errs = append(errs, configErr("WithSecretHeader", "the value for %s holds a line break or NUL", h.Name))
		case strings.EqualFold(h.Name, "Authorization") && !public:
			errs = append(errs, configErr("WithSecretHeader", "Authorization carries the engine's token; use NewPublic for a fixed one"))
		case framing[h.Name]:
			errs = append(errs, configErr("WithSecretHeader", "%s is set by net/http for each request, not a place for a secret", h.Name))
		case seen[h.Name]:
			errs = append(errs, configErr("WithSecretHeader", "%s given twice", h.Name))
		}
		seen[h.Name] = true
	}
	if len(c.secrets) > 0 && !haveOrigins {
		errs = append(errs, configErr("WithSecretHeader", "needs WithBaseURL: it names the origin that receives the header"))
	}
	return errs
}

// checkTelemetry rejects a nil pointer given as an OpenTelemetry provider or propagator: a nil
// interface means the global one, but a nil *sdktrace.TracerProvider panics on the first request.
func (c *config) checkTelemetry() []error {
	var errs []error
	for _, o := range []struct {
		name string
		v    any
	}{
		{"WithTracerProvider", c.tel.TracerProvider}, {"WithMeterProvider", c.tel.MeterProvider},
		{"WithPropagator", c.tel.Propagator},
	} {
		if o.v != nil && isNil(o.v) {
			errs = append(errs, configErr(o.name, "nil %T (give nil itself for the global one)", o.v))
		}
	}
	return errs
}

// framing lists the headers net/http writes itself (framing, routing, hop-by-hop): a fixed value
// there would break requests rather than authenticate them.
var framing = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
}

// checkPublic rejects the token options on a public engine.
func (c *config) checkPublic() []error {
	var errs []error
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"WithTokens", c.tokens != nil}, {"WithTokenEndpoint", c.endpointGiven},
		{"WithRefreshFunc", c.refreshFunc != nil}, {"WithTokenStore", c.store != nil},
		{"WithFamilyStore", c.families != nil}, {"WithCluster", c.cluster != nil},
		{"WithMaxConcurrentRefreshes", c.maxRefreshes != DefaultMaxConcurrentRefreshes},
		{"WithFamilyIdleTimeout", c.familyIdle != DefaultFamilyIdleTimeout},
		{"WithOrigins", len(c.origins) > 0}, {"WithClientAuth", c.clientID != ""},
	} {
		if o.set {
			errs = append(errs, configErr(o.name, "a public engine never attaches or refreshes tokens; use New"))
		}
	}
	return errs
}

// checkRefresh validates how tokens are refreshed: one way at most, a known format, and a token
// endpoint no less protected than the API (the refresh token is worth more than the access token).
func (c *config) checkRefresh(base *url.URL) []error {
	if !c.endpointGiven {
		if c.clientID != "" {
			return []error{configErr("WithClientAuth", "needs WithTokenEndpoint: it authenticates the calls made there")}
		}
		return nil
	}
	if c.tokenEndpoint == "" {
		return []error{configErr("WithTokenEndpoint", "empty URL")}
	}
	var errs []error
	if !c.format.wire().Valid() {
		errs = append(errs, configErr("WithTokenEndpoint", "unknown refresh format %v: use OAuth2Refresh or JSONRefresh", c.format))
	}
	if u, _, err := parseOrigin(c.tokenEndpoint); err != nil {
		errs = append(errs, configErr("WithTokenEndpoint", "%v", err))
	} else if base != nil && strings.EqualFold(base.Scheme, "https") && !strings.EqualFold(u.Scheme, "https") {
		errs = append(errs, configErr("WithTokenEndpoint", "%s endpoint for an https API: the refresh token would travel in clear", u.Scheme))
	}
	if c.refreshFunc != nil {
		errs = append(errs, configErr("WithRefreshFunc", "give either a token endpoint or a refresh function, not both"))
	}
	return errs
}

// checkCredentials validates the starting credentials once the store has been read.
func (c *config) checkCredentials(t Tokens) error {
	switch {
	case t.Access == "" && t.Refresh == "" && c.refreshFunc == nil && c.grant == nil:
		return configErr("WithTokens", "no credentials: give WithTokens, a WithTokenStore that holds some, or WithRefreshFunc")
	case c.tokenEndpoint != "" && t.Refresh == "":
		return configErr("WithTokenEndpoint", "a token endpoint needs a refresh token, and the starting tokens have none")
	}
	// The same check as every pair the token actor installs: a token that cannot be sent is refused
	// here rather than failing every request. (Its error names no token.)
	if err := actors.CheckTokens(t); err != nil {
		return configErr("WithTokens", "the starting tokens cannot be sent: %v", err)
	}
	return nil
}

// parseOrigin parses an absolute http or https URL. Its errors never quote the URL, which may
// carry a key in its query.
func parseOrigin(raw string) (*url.URL, actors.Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL
		}
		return nil, actors.Origin{}, fmt.Errorf("not a URL: %w", err)
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "":
		return nil, actors.Origin{}, errors.New("not an absolute URL: it has no scheme")
	case scheme != "http" && scheme != "https":
		return nil, actors.Origin{}, fmt.Errorf("scheme %q: only http and https are spoken", u.Scheme)
	case u.Hostname() == "":
		return nil, actors.Origin{}, errors.New("the URL has no host")
	case u.User != nil:
		return nil, actors.Origin{}, errors.New("the URL holds user:password; give credentials with WithSecretHeader or WithClientAuth")
	}
	o, err := actors.ParseOrigin(u.Scheme + "://" + u.Host)
	return u, o, err
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// isNil reports whether v is nil or holds a nil pointer, func, map, slice, channel or interface: a
// typed nil in an interface is not == nil, but calling a method on it panics.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan, reflect.Interface, reflect.UnsafePointer:
		return r.IsNil()
	}
	return false
}
