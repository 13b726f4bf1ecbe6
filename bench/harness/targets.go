package harness

import (
	"fmt"
	"strings"

	"github.com/resilientclient/resilient/bench/subjects"
)

// Verdict is the engine's standing against one of its speed targets.
type Verdict struct {
	Workload string
	Target   string
	Measured string
	Status   string // "met", "missed", or "not measured"
}

// Verdict statuses.
const (
	Met         = "met"
	Missed      = "missed"
	NotMeasured = "not measured"
)

func verdict(w, target string, ok, measured bool, format string, args ...any) Verdict {
	v := Verdict{Workload: w, Target: target, Measured: "—", Status: NotMeasured}
	if measured {
		v.Measured = fmt.Sprintf(format, args...)
		v.Status = Missed
		if ok {
			v.Status = Met
		}
	}
	return v
}

// Targets judges the engine against its targets (issue 7, and issue 14 for telemetry) from the
// medians of this run.
func (r *Results) Targets() []Verdict {
	var out []Verdict

	// W1: added cost ≤ 1.5× oauth2's added cost; allocations ≤ oauth2's + 4. The added costs are
	// medians of batch-paired differences; their ratio is taken last, since a ratio of two small
	// differences taken round by round swings wildly.
	for _, c := range []struct{ name, label string }{
		{HotPathCancellable, "requests on a cancellable context"},
		{HotPathBackground, "requests on context.Background"},
	} {
		ea, eok := r.Stat("W1", c.name, "engine", "added-ns/op")
		oa, ook := r.Stat("W1", c.name, "oauth2", "added-ns/op")
		if !eok && !ook && c.name == HotPathBackground {
			continue // a run from before this case existed
		}
		ratio := "oauth2's added cost is within noise of zero, so no ratio"
		if oa.Median > 0 {
			ratio = fmt.Sprintf("%.2f×", ea.Median/oa.Median)
		}
		out = append(out, verdict("W1", fmt.Sprintf("engine's added ns/op ≤ 1.5 × oauth2's added ns/op (tracing off; %s)", c.label),
			ea.Median <= 1.5*max(oa.Median, 0), eok && ook,
			"%s (engine %s ns, oauth2 %s ns)", ratio, rangeText(ea, "%+.0f"), rangeText(oa, "%+.0f")))
		allocs, ok := r.Diff("W1", c.name, "engine", "oauth2", "allocs/op")
		out = append(out, verdict("W1", fmt.Sprintf("engine allocs/op ≤ oauth2 allocs/op + 4 (%s)", c.label), ok && allocs.Median <= 4, ok,
			"%+.0f allocs/op", allocs.Median))
	}

	// W2: ≥ 0.95× raw at c=256, also with the SDK sampling one trace in ten (unsampled requests
	// must cost almost nothing beyond the metrics); with the SDK recording every request, at least
	// otelhttp's throughput on the same SDK (the engine records more: two spans and two histograms).
	for _, t := range []struct{ subject, label string }{
		{"engine", "engine req/s ≥ 0.95 × raw at c=256"},
		{subjects.EngineOTelSampled, "engine-otel-sampled req/s ≥ 0.95 × raw at c=256 (SDK sampling ParentBased(TraceIDRatioBased(0.1)))"},
	} {
		s, ok := r.Ratio("W2", "c=256", t.subject, "raw", "req/s")
		out = append(out, r.unavailable(verdict("W2", t.label, ok && s.Median >= 0.95, ok,
			"%.3f× (per-round %.3f–%.3f)", s.Median, s.Min, s.Max), t.subject))
	}
	s, ok := r.Ratio("W2", "c=256", subjects.EngineOTel, subjects.OTelHTTP, "req/s")
	v := verdict("W2", "engine-otel req/s ≥ otelhttp req/s at c=256 (both on the SDK recording every request)", ok && s.Median >= 1, ok,
		"%.3f× otelhttp (per-round %.3f–%.3f)", s.Median, s.Min, s.Max)
	if e, eok := r.Ratio("W2", "c=256", subjects.EngineOTel, "raw", "req/s"); ok && eok {
		o, _ := r.Ratio("W2", "c=256", subjects.OTelHTTP, "raw", "req/s")
		v.Measured += fmt.Sprintf("; ×raw: engine-otel %.3f×, otelhttp %.3f×", e.Median, o.Median)
	}
	out = append(out, r.unavailable(r.unavailable(v, subjects.EngineOTel), subjects.OTelHTTP))
	// The same at c=256 with a context of its own for every request (the server shape: no
	// cancellation node is shared), when it was run.
	if s, ok := r.Ratio("W2", "c=256"+PerRequestSuffix, "engine", "raw", "req/s"); ok {
		out = append(out, verdict("W2", "engine req/s ≥ 0.95 × raw at c=256, a context of its own for every request", s.Median >= 0.95, true,
			"%.3f× (per-round %.3f–%.3f)", s.Median, s.Min, s.Max))
	}

	// W3: exactly one refresh; release ≤ 1.2× the channel broadcast; ≤ 1 KiB of the engine's own per
	// parked request;
	// the large storm completes.
	for _, c := range r.Cases("W3") {
		refreshes, ok := r.Stat("W3", c, "engine", "refreshes")
		if !ok {
			continue
		}
		out = append(out, verdict("W3", fmt.Sprintf("%s: exactly 1 refresh call (every round)", c), refreshes.Min == 1 && refreshes.Max == 1, true,
			"%s refresh calls", rangeText(refreshes, "%.0f")))
		okN, _ := r.Stat("W3", c, "engine", "ok")
		n := r.stormN(c)
		if strings.HasSuffix(c, "k") {
			out = append(out, verdict("W3", fmt.Sprintf("%s: %d parked requests all answered 200", c, n), okN.Min == float64(n), true,
				"%s of %d", rangeText(okN, "%.0f"), n))
		}
		rel, rok := r.Ratio("W3", c, "engine", Broadcast, "release-ms")
		abs, _ := r.Stat("W3", c, "engine", "release-ms")
		base, _ := r.Stat("W3", c, Broadcast, "release-ms")
		wake, _ := r.Stat("W3", c, WakeOnly, "release-ms")
		out = append(out, verdict("W3", fmt.Sprintf("%s: release ≤ 1.2 × channel broadcast (wake + send)", c), rok && rel.Median <= 1.2, rok,
			"%.2f× (%.1f ms vs %.1f ms; wake alone %.1f ms)", rel.Median, abs.Median, base.Median, wake.Median))
		// The engine's own share: the baseline's row is what a caller's parked goroutine and its plain
		// GET hold whatever client it uses, so the target is read as what the engine adds to that,
		// measured in the same round (the total is shown too).
		heap, hok := r.Stat("W3", c, "engine", "heapB/parked")
		bheap, bok := r.Stat("W3", c, Broadcast, "heapB/parked")
		own := heap.Median - bheap.Median
		out = append(out, verdict("W3", fmt.Sprintf("%s: ≤ 1 KiB heap per parked request (the engine's own, over the baseline's parked caller)", c),
			hok && bok && own <= 1024, hok && bok,
			"%.0f B (%.0f B in all; the baseline's parked goroutine and its GET: %.0f B)", own, heap.Median, bheap.Median))
	}

	// W4: amplification ≤ 1.25.
	amp, ok := r.Stat("W4", "outage", "engine", "amplification")
	out = append(out, verdict("W4", "attempts ÷ logical requests ≤ 1.25 through the outage", ok && amp.Median <= 1.25, ok,
		"%s", rangeText(amp, "%.3f")))
	return out
}

// unavailable names why subject could not be run in v's place when it was not measured for that.
func (r *Results) unavailable(v Verdict, subject string) Verdict {
	if why, ok := r.Unavailable[subject]; ok && v.Status == NotMeasured {
		v.Measured = subject + ": " + why
	}
	return v
}

// stormN is the number of requests of W3's case c.
func (r *Results) stormN(c string) int {
	if strings.HasSuffix(c, "k") {
		return r.Config.StormBigN
	}
	return r.Config.StormN
}

// rangeText is "median (min–max)", or just the value when all rounds agree.
func rangeText(s Stat, f string) string {
	if s.Min == s.Max {
		return fmt.Sprintf(f, s.Median)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Median, s.Min, s.Max)
}
