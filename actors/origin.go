package actors

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/resilientclient/resilient/internal/httpx"
)

// Origin is a scheme, host and port: the unit that credentials are scoped to.
type Origin struct {
	Scheme string // lower case
	Host   string // lower case, without brackets for IPv6
	Port   string // explicit; the scheme's default when the URL had none
}

// ParseOrigin reads the origin of an absolute http or https URL.
func ParseOrigin(raw string) (Origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Origin{}, err
	}
	o := originOf(u)
	if o.Scheme != "http" && o.Scheme != "https" {
		return Origin{}, fmt.Errorf("%q is not an absolute http or https URL", raw)
	}
	if o.Host == "" {
		return Origin{}, fmt.Errorf("%q has no host", raw)
	}
	return o, nil
}

func originOf(u *url.URL) Origin {
	scheme := strings.ToLower(u.Scheme)
	return Origin{Scheme: scheme, Host: strings.ToLower(u.Hostname()), Port: portOf(scheme, u.Port())}
}

func portOf(scheme, port string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Matches reports whether u belongs to the origin. It allocates nothing.
func (o Origin) Matches(u *url.URL) bool {
	if h := u.Host; u.Scheme == o.Scheme && len(h) >= len(o.Host) && h[:len(o.Host)] == o.Host {
		// The common spellings, compared exactly: host alone on the scheme's port, or host:port.
		if rest := h[len(o.Host):]; rest == "" {
			if o.Port == portOf(o.Scheme, "") {
				return true
			}
		} else if rest[0] == ':' && rest[1:] == o.Port {
			return true
		}
	}
	if !strings.EqualFold(u.Scheme, o.Scheme) {
		return false
	}
	host, port := httpx.SplitHostPort(u.Host)
	return strings.EqualFold(host, o.Host) && portOf(o.Scheme, port) == o.Port
}

// String is scheme://host:port.
func (o Origin) String() string {
	return o.Scheme + "://" + net.JoinHostPort(o.Host, o.Port)
}
