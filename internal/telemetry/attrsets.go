package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/resilientclient/resilient/internal/httpx"
)

type setKind uint8

const (
	kindSend setKind = iota
	kindLogical
)

// attrKey is everything a measurement's attribute set is made of.
type attrKey struct {
	kind    setKind
	method  string
	scheme  string
	host    string // host[:port] as in the URL
	proto   string
	status  int
	errType string
}

// set returns the record options for k (its attribute set), made once per distinct k (up to
// maxSets). They are kept as a slice so that recording passes them without allocating one.
//
// A map of the concrete key type under a read lock, not a sync.Map: hashing an attrKey held in an
// interface goes through the runtime's generic, field-by-field hash, which cost more than the
// rest of the lookup (callgrind, bench/cmd/instructions).
func (t *T) set(k attrKey) []metric.RecordOption {
	t.setsMu.RLock()
	o, ok := t.sets[k]
	t.setsMu.RUnlock()
	if ok {
		return o
	}
	o = []metric.RecordOption{metric.WithAttributeSet(k.attributes())}
	t.setsMu.Lock()
	defer t.setsMu.Unlock()
	if kept, ok := t.sets[k]; ok {
		return kept
	}
	if len(t.sets) < maxSets {
		t.sets[k] = o
	}
	return o
}

// attributes builds k's set: for a send, otelhttp's metric attributes (method, server address and
// port, scheme, protocol, status, and error.type only when no answer came back); for a logical
// request, method, server address, status and error.type.
func (k attrKey) attributes() attribute.Set {
	host, p := httpx.SplitHostPort(k.host)
	port := portNumber(p)
	if port == defaultPort(k.scheme) {
		port = -1
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(methodAttr(k.method).Value.AsString()), semconv.ServerAddress(host))
	if k.kind == kindSend {
		attrs = append(attrs, semconv.URLScheme(k.scheme))
	}
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if k.kind == kindSend {
		if name, version := netProtocol(k.proto); name != "" {
			attrs = append(attrs, semconv.NetworkProtocolName(name))
			if version != "" {
				attrs = append(attrs, semconv.NetworkProtocolVersion(version))
			}
		}
	}
	if k.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(k.status))
	}
	if k.errType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(k.errType))
	}
	return attribute.NewSet(attrs...)
}
