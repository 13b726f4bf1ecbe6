package harness

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// column is one quantity shown in a workload's table.
type column struct {
	title string
	unit  string
	f     string // fmt verb for the median
	// how: "" the median with its spread; "ratio" the per-round ratio to the base; "diff" the
	// per-round difference from the base.
	how string
}

// base is the subject workload w's ratios are taken to.
func base(w string) string {
	if w == "W3" {
		return Broadcast
	}
	return "raw"
}

// columns are the tables' columns, by workload.
var columns = map[string][]column{
	"W1": {
		{"ns/op", "ns/op", "%.0f", ""}, {"×raw", "ns/op", "%.2f×", "ratio"}, {"added ns/op", "added-ns/op", "%+.0f", ""},
		{"allocs/op", "allocs/op", "%.0f", ""}, {"added allocs", "allocs/op", "%+.0f", "diff"}, {"B/op", "B/op", "%.0f", ""},
	},
	"W2": {
		{"req/s", "req/s", "%.0f", ""}, {"×raw", "req/s", "%.3f×", "ratio"}, {"p50 ms", "p50-ms", "%.3f", ""},
		{"p99 ms", "p99-ms", "%.2f", ""}, {"p99 ×raw", "p99-ms", "%.2f×", "ratio"}, {"failed", "failed", "%.0f", ""},
	},
	"W3": {
		{"ok", "ok", "%.0f", ""}, {"parked", "parked", "%.0f", ""}, {"refresh calls", "refreshes", "%.0f", ""}, {"reuse detected", "reuse", "%.0f", ""},
		{"release ms", "release-ms", "%.1f", ""}, {"×broadcast", "release-ms", "%.2f×", "ratio"},
		{"heap B/parked", "heapB/parked", "%.0f", ""}, {"total ms", "total-ms", "%.0f", ""},
	},
	"W4": {
		{"attempts ÷ logical", "amplification", "%.3f", ""}, {"logical", "logical", "%.0f", ""}, {"attempts", "attempts", "%.0f", ""},
		{"failed %", "failed-%", "%.1f", ""}, {"recovery ms", "recovery-ms", "%.0f", ""}, {"workers recovered", "recovered", "%.0f", ""},
	},
	"W5": {
		{"goodput/s", "goodput/s", "%.0f", ""}, {"×raw", "goodput/s", "%.3f×", "ratio"}, {"success %", "success-%", "%.2f", ""},
		{"duplicates", "duplicates", "%.0f", ""}, {"attempts ÷ logical", "attempts/logical", "%.3f", ""},
		{"p50 ms", "p50-ms", "%.2f", ""}, {"p99 ms", "p99-ms", "%.1f", ""}, {"p99 ×raw", "p99-ms", "%.1f×", "ratio"},
	},
}

// Titles of the workloads.
var titles = map[string]string{
	"W1": "W1 hot path: valid token, GET 200, in-memory transport",
	"W2": "W2 loopback throughput: GET, valid token",
	"W3": "W3 refresh storm: concurrent requests on an expired token, token endpoint 20 ms",
	"W4": "W4 outage: every answer 503 under many workers",
	"W5": "W5 flaky: 5 % of answers 503, 1 % of connections reset after the work",
}

// table returns workload w's case c as rows of cells, the header first.
func (r *Results) table(w, c string) [][]string {
	cols := columns[w]
	head := []string{"subject"}
	for _, col := range cols {
		head = append(head, col.title)
	}
	rows := [][]string{head}
	b := base(w)
	for _, s := range r.SubjectsIn(w, c) {
		row := []string{s}
		if errs := r.Errors(w, c, s); len(errs) > 0 {
			row[0] += fmt.Sprintf(" (%d failed runs)", len(errs))
		}
		for _, col := range cols {
			row = append(row, r.cell(w, c, s, b, col))
		}
		rows = append(rows, row)
	}
	return rows
}

// cell formats one column for one subject.
func (r *Results) cell(w, c, subject, base string, col column) string {
	var st Stat
	var ok bool
	switch col.how {
	case "ratio":
		if subject == base {
			return "1"
		}
		st, ok = r.Ratio(w, c, subject, base, col.unit)
	case "diff":
		if subject == base {
			return "0"
		}
		st, ok = r.Diff(w, c, subject, base, col.unit)
	default:
		st, ok = r.Stat(w, c, subject, col.unit)
	}
	if !ok || math.IsNaN(st.Median) || math.IsInf(st.Median, 0) {
		return "—"
	}
	s := fmt.Sprintf(col.f, st.Median)
	if col.how == "" && st.N > 1 && st.Spread() >= 0.005 {
		s += fmt.Sprintf(" ±%.0f%%", 100*st.Spread())
	}
	return s
}

// WriteText writes every table, aligned, then the targets.
func (r *Results) WriteText(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\n%s mode, %d rounds, %s, %s; medians over rounds, ±half the range; ratios taken within each round.\n",
		r.Config.Mode, r.Config.Rounds, r.Machine.GoVersion, r.Machine.CPU)
	for _, w := range Workloads {
		for _, c := range r.Cases(w) {
			fmt.Fprintf(tw, "\n%s — %s\n", titles[w], c)
			for _, row := range r.table(w, c) {
				fmt.Fprintln(tw, strings.Join(row, "\t"))
			}
		}
	}
	fmt.Fprintln(tw, "\nThe engine's targets")
	for _, v := range r.Targets() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Workload, v.Target, v.Measured, strings.ToUpper(v.Status))
	}
	for name, why := range r.Unavailable {
		fmt.Fprintf(tw, "\nnot measured: %s: %s\n", name, why)
	}
	return tw.Flush()
}
