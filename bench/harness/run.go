package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/bench/workload"
)

// Names of W3's plain-Go baselines, reported beside the subjects.
const (
	// Broadcast: goroutines parked on one channel, released by closing it, each then sending its
	// prepared GET through raw net/http; the base of W3's ratios.
	Broadcast = "chan-broadcast"
	// WakeOnly: the same goroutines, timed to the last one awake, without sending.
	WakeOnly = "chan-wake"
)

// Workloads in the order they run.
var Workloads = []string{"W1", "W2", "W3", "W4", "W5"}

// Run runs cfg. It writes a benchmark-format line for every sample to bench as it is measured
// (pipe it to benchstat), and one line of progress per run to progress. A failed run is recorded
// in its sample and does not stop the others; Run fails only when ctx ends or cfg is unusable.
func Run(ctx context.Context, cfg Config, bench, progress io.Writer) (*Results, error) {
	if !slices.ContainsFunc(cfg.Subjects, func(s subjects.Subject) bool { return s.Name == subjects.Raw }) {
		return nil, errors.New("harness: the raw subject is required: every ratio is taken to it")
	}
	res := &Results{Config: cfg, Machine: ReadMachine(), Started: time.Now(), LoadStart: LoadAverage(), Revision: Revision(), Unavailable: map[string]string{}}
	var ready []subjects.Subject
	for _, s := range cfg.Subjects {
		res.Subjects = append(res.Subjects, s.Name)
		if s.New == nil {
			res.Unavailable[s.Name] = "not wired yet (see its TODO in bench/subjects)"
			continue
		}
		ready = append(ready, s)
	}
	r := &runner{cfg: cfg, res: res, bench: bench, progress: progress}
	r.header()
	for round := 1; round <= cfg.Rounds; round++ {
		r.round = round
		order := shuffled(ready, round)
		for _, w := range Workloads {
			if len(cfg.Workloads) > 0 && !slices.Contains(cfg.Workloads, w) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			r.workload(ctx, w, order)
		}
	}
	res.Finished, res.LoadEnd, res.PeakRSSMiB = time.Now(), LoadAverage(), PeakRSSMiB()
	return res, ctx.Err()
}

// runner carries one Run.
type runner struct {
	cfg      Config
	res      *Results
	bench    io.Writer
	progress io.Writer
	round    int
}

func (r *runner) header() {
	m := r.res.Machine
	fmt.Fprintf(r.bench, "goos: %s\ngoarch: %s\npkg: github.com/resilientclient/resilient/bench\ncpu: %s\n", m.OS, m.Arch, m.CPU)
}

// shuffled returns ss in an order drawn from seed: the same seed, the same order.
func shuffled(ss []subjects.Subject, seed int) []subjects.Subject {
	out := slices.Clone(ss)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// PerRequestSuffix marks W2's cases where every request has a context of its own (c=256-ctx-per-request).
const PerRequestSuffix = "-ctx-per-request"

// W1's cases: requests on a context that can be cancelled (as a server handler's), and on
// context.Background.
const (
	HotPathCancellable = "hotpath"
	HotPathBackground  = "hotpath-background"
)

func (r *runner) workload(ctx context.Context, w string, order []subjects.Subject) {
	cfg := r.cfg
	switch w {
	case "W1":
		cancellable, cancel := context.WithCancel(ctx)
		defer cancel()
		for _, c := range []struct {
			name   string
			reqCtx context.Context
		}{{HotPathCancellable, cancellable}, {HotPathBackground, context.Background()}} {
			res, errs := workload.HotPath(ctx, c.reqCtx, order, subjects.Raw, cfg.HotPathTime, cfg.HotPathBatches)
			for _, s := range order {
				h := res[s.Name]
				r.record(w, c.name, s.Name, errs[s.Name], Value{"ns/op", h.NsPerOp}, Value{"added-ns/op", h.AddedNsPerOp},
					Value{"allocs/op", h.AllocsPerOp}, Value{"B/op", h.BytesPerOp})
			}
		}
	case "W2":
		for _, c := range cfg.Concurrency {
			for _, perRequest := range []bool{false, true} {
				if perRequest && !slices.Contains(cfg.PerRequestAt, c) {
					continue
				}
				name := fmt.Sprintf("c=%d", c)
				if perRequest {
					name += PerRequestSuffix
				}
				for _, s := range order {
					t, err := workload.Throughput(ctx, s, cfg.MaxIdle, c, cfg.Warmup, cfg.Window, perRequest)
					r.record(w, name, s.Name, err, Value{"req/s", t.ReqPerSec}, Value{"p50-ms", ms(t.P50)}, Value{"p99-ms", ms(t.P99)}, Value{"failed", float64(t.Failed)})
				}
			}
		}
	case "W3":
		for _, mode := range cfg.StormModes {
			r.storm(ctx, mode.String(), mode, cfg.StormN, order)
		}
		if cfg.StormBigN > 0 {
			var engineOnly []subjects.Subject
			for _, s := range order {
				if s.Name == "engine" {
					engineOnly = append(engineOnly, s)
				}
			}
			r.storm(ctx, fmt.Sprintf("%s-%dk", workload.KnownExpiry, cfg.StormBigN/1000), workload.KnownExpiry, cfg.StormBigN, engineOnly)
		}
	case "W4":
		for _, s := range order {
			o, err := workload.Outage(ctx, s, cfg.MaxIdle, cfg.OutageWork, cfg.Outage, cfg.Think, cfg.MaxRecovery)
			r.record(w, "outage", s.Name, err, Value{"amplification", o.Amplification}, Value{"logical", float64(o.Logical)}, Value{"attempts", float64(o.Attempts)},
				Value{"failed-%", pct(o.Failed, o.Logical)}, Value{"recovery-ms", ms(o.Recovery)}, Value{"recovered", float64(o.Recovered)})
		}
	case "W5":
		for _, s := range order {
			f, err := workload.Flaky(ctx, s, cfg.MaxIdle, cfg.FlakyWarm, cfg.FlakyRate, cfg.FlakyWindow, cfg.Flakiness, cfg.PostEvery)
			r.record(w, "flaky", s.Name, err, Value{"goodput/s", f.Goodput}, Value{"success-%", pct(f.OK, f.Logical)}, Value{"duplicates", float64(f.Duplicates)},
				Value{"attempts/logical", ratio(f.Attempts, f.Logical)}, Value{"p50-ms", ms(f.P50)}, Value{"p99-ms", ms(f.P99)})
		}
	}
}

// storm runs W3's case c: the baseline, then each subject that refreshes.
func (r *runner) storm(ctx context.Context, c string, mode workload.Expiry, n int, order []subjects.Subject) {
	b, err := workload.Broadcast(ctx, n)
	r.record("W3", c, Broadcast, err, Value{"release-ms", ms(b.WakeSend)}, Value{"heapB/parked", b.HeapPerParked}, Value{"ok", float64(b.OK)})
	r.record("W3", c, WakeOnly, err, Value{"release-ms", ms(b.Wake)})
	for _, s := range order {
		if !s.Refreshes {
			continue
		}
		st, err := workload.Storm(ctx, s, n, mode, r.cfg.TokenDelay)
		vs := []Value{{"refreshes", float64(st.RefreshCalls)}, {"ok", float64(st.OK)}, {"failed", float64(st.Failed)},
			{"reuse", float64(st.ReuseDetected)}, {"revoked", float64(st.Revocations)}, {"401s", float64(st.Unauthorized)},
			{"parked", float64(st.Parked)}, {"total-ms", ms(st.Total)}}
		if st.Release > 0 { // a successful refresh, and every request answered 200 after it
			vs = append(vs, Value{"release-ms", ms(st.Release)})
		}
		if st.Parked > 0 {
			vs = append(vs, Value{"heapB/parked", st.HeapPerParked})
		}
		r.record("W3", c, s.Name, err, vs...)
	}
}

// record keeps a sample and writes its benchmark line and a progress line.
func (r *runner) record(w, c, subject string, err error, vs ...Value) {
	s := Sample{Workload: w, Case: c, Subject: subject, Round: r.round}
	if err != nil {
		s.Err = err.Error()
		fmt.Fprintf(r.progress, "round %d %s %s %s: FAILED: %v\n", r.round, w, c, subject, err)
		r.res.Samples = append(r.res.Samples, s)
		return
	}
	s.Values = vs
	r.res.Samples = append(r.res.Samples, s)
	var b strings.Builder
	fmt.Fprintf(&b, "Benchmark%s/%s/%s 1", w, c, subject)
	for _, v := range vs {
		fmt.Fprintf(&b, " %s %s", formatValue(v.V), v.Unit)
	}
	fmt.Fprintln(r.bench, b.String())
	fmt.Fprintf(r.progress, "round %d/%d %s %-18s %-14s %s %s\n", r.round, r.cfg.Rounds, w, c, subject, formatValue(vs[0].V), vs[0].Unit)
}

// formatValue prints v with enough digits for benchstat and no exponent.
func formatValue(v float64) string {
	switch {
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	case abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.4g", v)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
