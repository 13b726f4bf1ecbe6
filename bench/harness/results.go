package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
)

// Value is one measured quantity of a sample.
type Value struct {
	Unit string // benchstat-style: "ns/op", "req/s", "p99-ms", …
	V    float64
}

// Sample is what one subject measured in one case of one workload in one round.
type Sample struct {
	Workload string // W1…W5
	Case     string // "hotpath", "c=256", "known-expiry", …: no spaces
	Subject  string
	Round    int
	Values   []Value
	Err      string // the run failed: no Values
}

// Get returns the value with unit.
func (s Sample) Get(unit string) (float64, bool) {
	for _, v := range s.Values {
		if v.Unit == unit {
			return v.V, true
		}
	}
	return 0, false
}

// Results is a whole run.
type Results struct {
	Config            Config
	Machine           Machine
	Started, Finished time.Time
	// Load averages at the start and the end (other work on the machine), and the process's peak
	// resident memory.
	LoadStart, LoadEnd string
	PeakRSSMiB         float64
	Samples            []Sample
	// Unavailable names subjects that could not be built, with why.
	Unavailable map[string]string
	// Subjects names Config.Subjects, for Load.
	Subjects []string
	// Revision is the commit of the repository measured, and whether files outside bench/ had
	// uncommitted changes: what the engine's numbers are numbers of.
	Revision string
}

// Save writes r as JSON, for Load to read back and report again without measuring again.
func (r *Results) Save(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(r)
}

// Load reads what Save wrote; the subjects' descriptions are today's.
func Load(rd io.Reader) (*Results, error) {
	var r Results
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("harness: reading results: %w", err)
	}
	ss, err := subjects.Named(r.Subjects...)
	if err != nil {
		return nil, err
	}
	r.Config.Subjects = ss
	return &r, nil
}

// Stat summarises one quantity over rounds.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// Spread is half the range as a fraction of the median: ±Spread.
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / 2 / abs(s.Median)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// summarize returns the median, minimum and maximum of vs.
func summarize(vs []float64) (Stat, bool) {
	if len(vs) == 0 {
		return Stat{}, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}, true
}

// values returns, by round, the unit's values for subject in workload w's case c.
func (r *Results) values(w, c, subject, unit string) map[int]float64 {
	out := map[int]float64{}
	for _, s := range r.Samples {
		if s.Workload == w && s.Case == c && s.Subject == subject && s.Err == "" {
			if v, ok := s.Get(unit); ok {
				out[s.Round] = v
			}
		}
	}
	return out
}

// Stat summarises unit for subject in workload w's case c over the rounds.
func (r *Results) Stat(w, c, subject, unit string) (Stat, bool) {
	var vs []float64
	for _, v := range r.values(w, c, subject, unit) {
		vs = append(vs, v)
	}
	return summarize(vs)
}

// Ratio summarises, over the rounds where both ran, unit for subject divided by unit for base in
// the same round: the ratio is taken inside each round, then the median is taken.
func (r *Results) Ratio(w, c, subject, base, unit string) (Stat, bool) {
	return r.combine(w, c, subject, base, unit, func(a, b float64) (float64, bool) { return a / b, b != 0 })
}

// Diff summarises, over the rounds, unit for subject minus unit for base in the same round.
func (r *Results) Diff(w, c, subject, base, unit string) (Stat, bool) {
	return r.combine(w, c, subject, base, unit, func(a, b float64) (float64, bool) { return a - b, true })
}

func (r *Results) combine(w, c, subject, base, unit string, f func(a, b float64) (float64, bool)) (Stat, bool) {
	bs := r.values(w, c, base, unit)
	var vs []float64
	for round, v := range r.values(w, c, subject, unit) {
		if b, ok := bs[round]; ok {
			if x, ok := f(v, b); ok {
				vs = append(vs, x)
			}
		}
	}
	return summarize(vs)
}

// Cases returns workload w's cases in the order they first ran.
func (r *Results) Cases(w string) []string {
	var out []string
	for _, s := range r.Samples {
		if s.Workload == w && !slices.Contains(out, s.Case) {
			out = append(out, s.Case)
		}
	}
	return out
}

// SubjectsIn returns the subjects that have samples in workload w's case c, in the order of the
// configuration (baselines first).
func (r *Results) SubjectsIn(w, c string) []string {
	var seen []string
	for _, s := range r.Samples {
		if s.Workload == w && s.Case == c && !slices.Contains(seen, s.Subject) {
			seen = append(seen, s.Subject)
		}
	}
	var out []string
	for _, b := range []string{Broadcast, WakeOnly} {
		if slices.Contains(seen, b) {
			out = append(out, b)
		}
	}
	for _, s := range r.Config.Subjects {
		if slices.Contains(seen, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// Errors returns the failed runs of subject in workload w's case c.
func (r *Results) Errors(w, c, subject string) []string {
	var out []string
	for _, s := range r.Samples {
		if s.Workload == w && s.Case == c && s.Subject == subject && s.Err != "" {
			out = append(out, s.Err)
		}
	}
	return out
}
