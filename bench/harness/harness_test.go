package harness

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/bench/subjects"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One tiny run covers every subject and workload, writes every output, and measures what it says:
// the engine refreshes exactly once in every storm, raw never retries, the baselines are there.
func TestTinyRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var bench, progress bytes.Buffer
	res, err := Run(ctx, Tiny(), &bench, &progress)
	require.NoError(t, err)

	for _, s := range res.Samples {
		assert.Empty(t, s.Err, "%s %s %s round %d", s.Workload, s.Case, s.Subject, s.Round)
	}
	for _, s := range subjects.All() {
		if s.New == nil {
			assert.Contains(t, res.Unavailable, s.Name)
			continue
		}
		for _, w := range []string{"W1", "W2", "W4", "W5"} {
			for _, c := range res.Cases(w) {
				st, ok := res.Stat(w, c, s.Name, columns[w][0].unit)
				if assert.True(t, ok, "%s %s %s", w, c, s.Name) {
					assert.Equal(t, 2, st.N, "one sample per round")
				}
			}
		}
		_, ok := res.Stat("W3", "known-expiry", s.Name, "refreshes")
		assert.Equal(t, s.Refreshes, ok, "W3 runs exactly the subjects that refresh: %s", s.Name)
	}
	assert.Equal(t, []string{"c=1", "c=4", "c=4" + PerRequestSuffix}, res.Cases("W2"))
	assert.Equal(t, []string{"known-expiry", "401-storm", "known-expiry-0k"}, res.Cases("W3"))
	for _, c := range res.Cases("W3") {
		refreshes, ok := res.Stat("W3", c, "engine", "refreshes")
		require.True(t, ok, c)
		assert.Equal(t, Stat{Median: 1, Min: 1, Max: 1, N: 2}, refreshes, c)
		_, ok = res.Stat("W3", c, Broadcast, "release-ms")
		assert.True(t, ok, "the baseline ran beside %s", c)
	}
	amp, _ := res.Stat("W4", "outage", subjects.Raw, "amplification")
	assert.Equal(t, 1.0, amp.Max, "raw never retries")

	assert.Contains(t, bench.String(), "BenchmarkW2/c=4/engine 1 ")
	assert.Contains(t, bench.String(), "cpu: ")
	assert.Contains(t, progress.String(), "round 2/2 W5")

	var text bytes.Buffer
	require.NoError(t, res.WriteText(&text))
	assert.Contains(t, text.String(), "The engine's targets")

	dir := t.TempDir()
	var md bytes.Buffer
	require.NoError(t, res.WriteMarkdown(&md, "throughput.svg"))
	for _, want := range []string{"# Benchmark results", "| CPU |", "## The engine's targets", "## W5", "![throughput", "| engine |", "## Caveats"} {
		assert.Contains(t, md.String(), want)
	}
	for _, name := range []string{"plot.svg", "plot.png"} {
		file := filepath.Join(dir, name)
		require.NoError(t, res.WritePlot(file))
		info, err := os.Stat(file)
		require.NoError(t, err)
		assert.Greater(t, info.Size(), int64(1000), name)
	}
	assert.Error(t, res.WritePlot(filepath.Join(dir, "plot.gif")))
	verdicts := res.Targets()
	assert.GreaterOrEqual(t, len(verdicts), 10)
	for _, v := range verdicts {
		assert.Contains(t, []string{Met, Missed, NotMeasured}, v.Status, v.Target)
	}
}

// W1's allocation counts are exact: a subject that allocates ten objects more than raw per call
// is reported with ten added allocations.
func TestHotPathCountsAddedAllocations(t *testing.T) {
	raw, err := subjects.Named(subjects.Raw)
	require.NoError(t, err)
	heavier := raw[0]
	heavier.Name = "raw+10"
	heavier.New = func(env subjects.Env) (subjects.Client, error) {
		c, err := raw[0].New(env)
		return allocating{c}, err
	}
	cfg := Tiny()
	cfg.Subjects = []subjects.Subject{raw[0], heavier}
	cfg.Workloads = []string{"W1"}
	res, err := Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	added, ok := res.Diff("W1", "hotpath", "raw+10", subjects.Raw, "allocs/op")
	require.True(t, ok)
	assert.InDelta(t, 10, added.Median, 0.5)
}

var sink []*[64]byte

type allocating struct{ subjects.Client }

func (a allocating) Do(ctx context.Context, r subjects.Request) (int, error) {
	for range 10 {
		sink = append(sink[:0], new([64]byte))
	}
	return a.Client.Do(ctx, r)
}

func TestRunNeedsRaw(t *testing.T) {
	cfg := Tiny()
	engine, err := subjects.Named("engine")
	require.NoError(t, err)
	cfg.Subjects = engine
	_, err = Run(context.Background(), cfg, &bytes.Buffer{}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "raw")
}

// Ratios and differences pair the rounds: the median of per-round ratios, not the ratio of medians.
func TestRatiosPairRounds(t *testing.T) {
	res := &Results{Config: Config{Subjects: subjects.All()}}
	add := func(subject string, round int, v float64) {
		res.Samples = append(res.Samples, Sample{Workload: "W2", Case: "c=1", Subject: subject, Round: round, Values: []Value{{"req/s", v}}})
	}
	for round, vs := range [][2]float64{{100, 90}, {200, 190}, {50, 45}} {
		add("raw", round, vs[0])
		add("engine", round, vs[1])
	}
	add("engine", 9, 1000) // a round without raw is not paired
	ratio, ok := res.Ratio("W2", "c=1", "engine", "raw", "req/s")
	require.True(t, ok)
	assert.Equal(t, 3, ratio.N)
	assert.InDelta(t, 0.9, ratio.Median, 1e-9)
	assert.InDelta(t, 0.9, ratio.Min, 1e-9)
	assert.InDelta(t, 0.95, ratio.Max, 1e-9)
	diff, _ := res.Diff("W2", "c=1", "engine", "raw", "req/s")
	assert.Equal(t, -10.0, diff.Median)
	st, _ := res.Stat("W2", "c=1", "engine", "req/s")
	assert.Equal(t, Stat{Median: 140, Min: 45, Max: 1000, N: 4}, st) // (90+190)/2
	assert.InDelta(t, 955.0/2/140, st.Spread(), 1e-9)
	assert.Equal(t, "1", res.cell("W2", "c=1", "raw", "raw", columns["W2"][1]))
	assert.Equal(t, "0.900×", res.cell("W2", "c=1", "engine", "raw", columns["W2"][1]))
}

func TestTargetsJudgeMedians(t *testing.T) {
	res := &Results{Config: Config{Subjects: subjects.All(), StormN: 10}, Unavailable: map[string]string{"engine-otel": "not wired"}}
	add := func(w, c, subject string, vs ...Value) {
		for round := range 3 {
			res.Samples = append(res.Samples, Sample{Workload: w, Case: c, Subject: subject, Round: round, Values: vs})
		}
	}
	add("W1", "hotpath", "raw", Value{"ns/op", 1000}, Value{"added-ns/op", 0}, Value{"allocs/op", 10})
	add("W1", "hotpath", "oauth2", Value{"ns/op", 1400}, Value{"added-ns/op", 400}, Value{"allocs/op", 12})
	add("W1", "hotpath", "engine", Value{"ns/op", 1700}, Value{"added-ns/op", 700}, Value{"allocs/op", 17})
	add("W2", "c=256", "raw", Value{"req/s", 1000})
	add("W2", "c=256", "engine", Value{"req/s", 960})
	add("W2", "c=256"+PerRequestSuffix, "raw", Value{"req/s", 1000})
	add("W2", "c=256"+PerRequestSuffix, "engine", Value{"req/s", 940})
	add("W3", "known-expiry", Broadcast, Value{"release-ms", 10}, Value{"heapB/parked", 900})
	add("W3", "known-expiry", "engine", Value{"refreshes", 1}, Value{"ok", 10}, Value{"release-ms", 11}, Value{"heapB/parked", 2000})
	add("W4", "outage", "engine", Value{"amplification", 1.3})
	status := map[string]string{}
	for _, v := range res.Targets() {
		status[v.Target] = v.Status
	}
	assert.Equal(t, Missed, status["engine's added ns/op ≤ 1.5 × oauth2's added ns/op (tracing off; requests on a cancellable context)"], "700 ns is 1.75× 400 ns")
	assert.Equal(t, Missed, status["engine allocs/op ≤ oauth2 allocs/op + 4 (requests on a cancellable context)"], "5 more")
	_, background := status["engine allocs/op ≤ oauth2 allocs/op + 4 (requests on context.Background)"]
	assert.False(t, background, "no verdict for a case that was not run")
	assert.Equal(t, Met, status["engine req/s ≥ 0.95 × raw at c=256"])
	assert.Equal(t, NotMeasured, status["engine-otel req/s ≥ otelhttp req/s at c=256 (both on the SDK recording every request)"])
	assert.Equal(t, Missed, status["engine req/s ≥ 0.95 × raw at c=256, a context of its own for every request"], "0.94×")
	assert.Equal(t, Met, status["known-expiry: exactly 1 refresh call (every round)"])
	assert.Equal(t, Met, status["known-expiry: release ≤ 1.2 × channel broadcast (wake + send)"])
	assert.Equal(t, Missed, status["known-expiry: ≤ 1 KiB heap per parked request (the engine's own, over the baseline's parked caller)"],
		"2000 B is 1100 B over the baseline's 900 B")
	assert.Equal(t, Missed, status["attempts ÷ logical requests ≤ 1.25 through the outage"])
}

func TestShuffled(t *testing.T) {
	all := subjects.All()
	names := func(ss []subjects.Subject) string {
		var b strings.Builder
		for _, s := range ss {
			b.WriteString(s.Name[:1])
		}
		return b.String()
	}
	assert.Equal(t, names(shuffled(all, 3)), names(shuffled(all, 3)), "repeatable")
	assert.NotEqual(t, names(shuffled(all, 1)), names(shuffled(all, 2)))
	assert.ElementsMatch(t, strings.Split(names(all), ""), strings.Split(names(shuffled(all, 5)), ""), "a permutation")
}

// Results saved as JSON load back with the same tables.
func TestSaveLoad(t *testing.T) {
	res := &Results{Config: Tiny(), Subjects: []string{subjects.Raw, "engine"}, Unavailable: map[string]string{}}
	res.Config.Subjects, _ = subjects.Named(res.Subjects...)
	for round := range 2 {
		res.Samples = append(res.Samples,
			Sample{Workload: "W2", Case: "c=1", Subject: subjects.Raw, Round: round, Values: []Value{{"req/s", 100}}},
			Sample{Workload: "W2", Case: "c=1", Subject: "engine", Round: round, Values: []Value{{"req/s", 90}}})
	}
	var buf bytes.Buffer
	require.NoError(t, res.Save(&buf))
	back, err := Load(&buf)
	require.NoError(t, err)
	assert.Equal(t, res.table("W2", "c=1"), back.table("W2", "c=1"))
	assert.Equal(t, time.Duration(10*time.Millisecond), back.Config.HotPathTime)
	assert.Len(t, back.Config.Subjects, 2)
}

// When oauth2's added cost is lost in noise (zero or below), the engine meets the W1 target only by
// adding nothing either.
func TestAddedCostTargetWithoutOAuth2Cost(t *testing.T) {
	res := &Results{Config: Config{Subjects: subjects.All()}}
	res.Samples = []Sample{
		{Workload: "W1", Case: "hotpath", Subject: "oauth2", Values: []Value{{"added-ns/op", -20}}},
		{Workload: "W1", Case: "hotpath", Subject: "engine", Values: []Value{{"added-ns/op", 300}}},
	}
	v := res.Targets()[0]
	assert.Equal(t, Missed, v.Status)
	assert.Contains(t, v.Measured, "within noise")
}

// The telemetry targets of W2: with every request recorded, the engine against otelhttp on the same
// SDK (raw ratios shown for scale); with one trace in ten sampled, the engine against raw. A subject
// that could not run says why.
func TestOTelVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rps               map[string]float64
		unavailable       map[string]string
		recorded, sampled string
		recordedMeasured  string
	}{
		{"both met", map[string]float64{subjects.Raw: 1000, subjects.EngineOTel: 780, subjects.OTelHTTP: 770, subjects.EngineOTelSampled: 960},
			nil, Met, Met, "1.013× otelhttp"},
		{"both missed", map[string]float64{subjects.Raw: 1000, subjects.EngineOTel: 760, subjects.OTelHTTP: 770, subjects.EngineOTelSampled: 940},
			nil, Missed, Missed, "×raw: engine-otel 0.760×, otelhttp 0.770×"},
		{"otelhttp not run", map[string]float64{subjects.Raw: 1000, subjects.EngineOTel: 760},
			map[string]string{subjects.OTelHTTP: "not wired"}, NotMeasured, NotMeasured, "otelhttp: not wired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &Results{Config: Tiny(), Unavailable: tc.unavailable}
			for round := range 3 {
				for subject, rps := range tc.rps {
					res.Samples = append(res.Samples, Sample{Workload: "W2", Case: "c=256", Subject: subject, Round: round, Values: []Value{{"req/s", rps}}})
				}
			}
			got := map[string]Verdict{}
			for _, v := range res.Targets() {
				got[v.Target] = v
			}
			rec := got["engine-otel req/s ≥ otelhttp req/s at c=256 (both on the SDK recording every request)"]
			assert.Equal(t, tc.recorded, rec.Status)
			assert.Contains(t, rec.Measured, tc.recordedMeasured)
			assert.Equal(t, tc.sampled, got["engine-otel-sampled req/s ≥ 0.95 × raw at c=256 (SDK sampling ParentBased(TraceIDRatioBased(0.1)))"].Status)
		})
	}
}

// The hand-written last section of RESULTS.md survives the harness writing the file again.
func TestHandSection(t *testing.T) {
	hand := HandHeading + "\n\nCallgrind: 123 instructions.\n"
	assert.Equal(t, hand, HandSection("# Benchmark results\n\n## W1\n\n| a |\n\n"+hand))
	assert.Empty(t, HandSection("# Benchmark results\n\n## W1\n"))
	assert.Empty(t, HandSection(""))
}
