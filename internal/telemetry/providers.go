package telemetry

import (
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// active is what the tracer and meter providers are at one moment, and whether either can be
// skipped: a tracer that makes no spans, a meter that keeps nothing. A request reads it once (two
// atomic loads when following the global providers) and does no work for what is off.
type active struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	same bool // both can be compared with ==, so they can be recognised again

	tracer trace.Tracer
	// tracesOff: the tracer makes no spans of its own (the no-op provider, or the global one before
	// an SDK is installed). Its spans would only pass the parent's span context through, which
	// leaving the context as it is does too; so no span is started at all.
	tracesOff bool
	// metricsOff: the meter provider is the no-op one, or the global one before an SDK is installed.
	metricsOff bool
}

// now returns the providers in force: the configured ones, and for the others the global ones as
// they are now, so that an SDK installed after New takes over at once. Nothing is started or
// recorded to find out (a provider that cannot be compared is looked at again on every call).
func (t *T) now() *active {
	tp, mp := t.cfg.TracerProvider, t.cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if a := t.cur.Load(); a != nil && a.same && a.tp == tp && a.mp == mp {
		return a
	}
	a := &active{tp: tp, mp: mp, tracer: tp.Tracer(ScopeName)}
	// Values, not types: a struct wrapping a provider is a comparable type that == still panics on
	// when its field holds something that cannot be compared.
	a.same = reflect.ValueOf(tp).Comparable() && reflect.ValueOf(mp).Comparable()
	a.tracesOff = noTracer(tp, t.cfg.TracerProvider == nil)
	a.metricsOff = noMeter(mp, t.cfg.MeterProvider == nil)
	t.cur.Store(a)
	return a
}

// propagator returns the propagator in force: the configured one, else the global one as it is
// now.
func (t *T) propagator() propagation.TextMapPropagator {
	if t.cfg.Propagator != nil {
		return t.cfg.Propagator
	}
	return otel.GetTextMapPropagator()
}

// globalStandIn is the otel package's global stand-in propagator, which otel.GetTextMapPropagator
// returns until the application sets a propagator (it then returns the new one). It is read when
// this package starts, before an application's main can set one; nil if it is not recognised (a
// propagator set in an init before this one ran, or a renamed type), which costs only the search
// injector would have spared. A pointer: comparing any propagator with it cannot panic.
var globalStandIn = func() propagation.TextMapPropagator {
	if p := otel.GetTextMapPropagator(); p != nil && isGlobalStandIn(p, "*global.textMapPropagator") {
		return p
	}
	return nil
}()

// injector returns the propagator in force and whether it may write anything. When following the
// global propagator, the stand-in writes nothing (it has no propagator to forward to while it is the
// one returned), and neither does a nil one; a request then need not search its context for a span
// context or baggage to write. Any other propagator, and every propagator given in Config (which
// may get a delegate behind it later without changing identity), is taken to write.
func (t *T) injector() (propagation.TextMapPropagator, bool) {
	if t.cfg.Propagator != nil {
		return t.cfg.Propagator, true
	}
	p := otel.GetTextMapPropagator()
	return p, p != nil && p != globalStandIn
}

// isGlobalStandIn reports whether v is the otel package's global stand-in of the given type, which
// the getters return until the application installs its own. The otel API offers no other way to
// ask; the name is read only when a provider changes (now caches the verdict), and were the type
// ever renamed the engine would only do the work always. It is worth it: with the stand-ins taken
// for real providers, every request would start two spans and take two measurements that go
// nowhere (bench/RESULTS.md, "Telemetry", has the count).
func isGlobalStandIn(v any, typeName string) bool {
	return reflect.TypeOf(v).String() == typeName
}

// noTracer reports whether tp makes no spans: the no-op provider, or, when following the global
// provider, the global stand-in while no SDK is installed. A provider given in Config is never taken
// for the stand-in: an SDK may come behind it later without changing its identity.
func noTracer(tp trace.TracerProvider, global bool) bool {
	if _, ok := tp.(tracenoop.TracerProvider); ok {
		return true
	}
	return global && isGlobalStandIn(tp, "*global.tracerProvider")
}

// noMeter reports whether mp keeps nothing: the no-op provider, or, when following the global
// provider, the global one while no SDK is installed (once one is, otel.GetMeterProvider returns the
// SDK itself and this is asked again; were the global type ever renamed, metrics would only be
// recorded always). A provider given in Config is never taken for the global one: it may get an SDK
// behind it later without changing identity.
func noMeter(mp metric.MeterProvider, global bool) bool {
	if _, ok := mp.(metricnoop.MeterProvider); ok {
		return true
	}
	return global && isGlobalStandIn(mp, "*global.meterProvider")
}
