// Package harness runs the workloads over the subjects in interleaved rounds and reports what it
// measured: benchmark-format lines (for benchstat) as it goes, then medians with their spread and
// ratios to raw net/http from the same rounds, as text, as Markdown (RESULTS.md) and as a plot.
//
// Within a round every workload case runs each subject once, in an order shuffled afresh for each
// round (seeded by the round's number, so runs are repeatable), so slow drift of a shared, noisy
// machine spreads over all subjects, and no subject always follows the same neighbour (whose
// garbage or closing connections it would inherit).
package harness

import (
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/bench/workload"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Config says what to run and for how long. Full, Quick and Tiny are the presets.
type Config struct {
	Mode     string // the preset's name, for the report
	Rounds   int
	Subjects []subjects.Subject `json:"-"` // raw must be among them: it is what ratios are taken to
	// Workloads limits the run to these (W1…W5); empty means all.
	Workloads []string
	// MaxIdle is every subject's idle-connection pool per host: at least the highest concurrency.
	MaxIdle int

	HotPathTime    time.Duration // W1: timed per subject per round
	HotPathBatches int           // W1: interleaved batches the time is cut into

	Concurrency    []int         // W2
	PerRequestAt   []int         // W2: concurrencies also run with a context of its own for every request
	Warmup, Window time.Duration // W2: per subject, per concurrency, per round

	StormN      int               // W3: parked requests
	StormBigN   int               // W3: the large storm, engine and baseline only (0: none)
	StormModes  []workload.Expiry // W3
	TokenDelay  time.Duration     // W3: how long the token endpoint takes to answer
	OutageWork  int               // W4: workers
	Outage      time.Duration     // W4: how long every answer is 503
	Think       time.Duration     // W4: each worker's pause between requests
	MaxRecovery time.Duration     // W4: how long to wait for every worker to succeed again

	FlakyRate   float64           // W5: logical requests started per second
	FlakyWindow time.Duration     // W5
	Flakiness   fakeapi.Flakiness // W5
	PostEvery   int               // W5: every PostEvery-th request is a POST /orders
	FlakyWarm   int               // W5: connections opened before the failures start
}

// Full is the preset for RESULTS.md: six rounds (benchstat's minimum for a confidence interval);
// about fourteen minutes on two cores.
func Full() Config {
	return Config{
		Mode: "full", Rounds: 6, Subjects: subjects.All(), MaxIdle: 1024,
		HotPathTime: 2 * time.Second, HotPathBatches: 80,
		Concurrency: []int{1, 64, 256, 1024}, PerRequestAt: []int{256}, Warmup: 200 * time.Millisecond, Window: 1500 * time.Millisecond,
		StormN: 10_000, StormBigN: 100_000, StormModes: []workload.Expiry{workload.KnownExpiry, workload.Unknown401}, TokenDelay: 20 * time.Millisecond,
		OutageWork: 200, Outage: 2 * time.Second, Think: 20 * time.Millisecond, MaxRecovery: 30 * time.Second,
		FlakyRate: 2000, FlakyWindow: 3 * time.Second, Flakiness: fakeapi.Flakiness{Unavailable: 0.05, Reset: 0.01}, PostEvery: 5, FlakyWarm: 64,
	}
}

// Quick is Full made to finish in a little over a minute: two rounds, short windows, a shorter
// outage.
func Quick() Config {
	c := Full()
	c.Mode, c.Rounds = "quick", 2
	c.HotPathTime, c.HotPathBatches = 200*time.Millisecond, 10
	c.Warmup, c.Window = 50*time.Millisecond, 200*time.Millisecond
	c.Outage = 500 * time.Millisecond
	c.FlakyWindow = 500 * time.Millisecond
	return c
}

// Tiny is for the harness's own tests: every subject and workload, in seconds.
func Tiny() Config {
	return Config{
		Mode: "tiny", Rounds: 2, Subjects: subjects.All(), MaxIdle: 16,
		HotPathTime: 10 * time.Millisecond, HotPathBatches: 2,
		Concurrency: []int{1, 4}, PerRequestAt: []int{4}, Warmup: 10 * time.Millisecond, Window: 30 * time.Millisecond,
		StormN: 100, StormBigN: 300, StormModes: []workload.Expiry{workload.KnownExpiry, workload.Unknown401}, TokenDelay: 2 * time.Millisecond,
		OutageWork: 4, Outage: 100 * time.Millisecond, Think: 10 * time.Millisecond, MaxRecovery: 10 * time.Second,
		FlakyRate: 500, FlakyWindow: 100 * time.Millisecond, Flakiness: fakeapi.Flakiness{Unavailable: 0.05, Reset: 0.01}, PostEvery: 5, FlakyWarm: 4,
	}
}
