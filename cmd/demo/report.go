package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// reporter is where the acts tell their story: the explanations and figures go to w, the verdict
// lines to v, and both are gathered for -json. Only the goroutine running the acts uses it.
type reporter struct {
	w     io.Writer // figures and explanations: io.Discard under -quiet and -json
	v     io.Writer // verdict lines: io.Discard under -json
	out   io.Writer // stdout, where bars are drawn
	quiet bool
	tty   bool // stdout is a terminal and a person reads it: bars and colours
	acts  []*actResult
	cur   *actResult
}

// actResult is one act's verdict and figures, as -json prints them.
type actResult struct {
	Act     int                `json:"act"`
	Title   string             `json:"title"`
	OK      bool               `json:"ok"`
	Seconds float64            `json:"seconds"`
	Checks  []checkResult      `json:"checks"`
	Figures map[string]float64 `json:"figures"`
}

// checkResult is one verdict line.
type checkResult struct {
	What   string `json:"what"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func newReporter(stdout io.Writer, quiet, asJSON bool) *reporter {
	r := &reporter{w: stdout, v: stdout, out: stdout, quiet: quiet}
	switch {
	case asJSON:
		r.w, r.v = io.Discard, io.Discard
	case quiet:
		r.w = io.Discard
	default:
		r.tty = isTerminal(stdout)
	}
	return r
}

// isTerminal says whether w is a terminal, by mpb's own check (a terminal answers a termios
// request; /dev/null, a pipe or a CI log does not).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && cupwriter.New(f, false).IsTerminal()
}

// begin starts act n.
func (r *reporter) begin(n int, title string) {
	r.cur = &actResult{Act: n, Title: title, OK: true, Figures: map[string]float64{}}
	r.acts = append(r.acts, r.cur)
	fmt.Fprintf(r.w, "Act %d — %s\n", n, title)
}

// end closes the current act, which took d.
func (r *reporter) end(d time.Duration) {
	if r.cur == nil {
		return
	}
	r.cur.Seconds = math.Round(d.Seconds()*100) / 100
	if len(r.cur.Checks) == 0 {
		r.cur.OK = false // an act that checked nothing proved nothing
	}
	r.cur = nil
	fmt.Fprintln(r.w)
}

func (r *reporter) ok() bool {
	for _, a := range r.acts {
		if !a.OK {
			return false
		}
	}
	return len(r.acts) > 0
}

// printf writes a line of figures.
func (r *reporter) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

// figure records a number for -json.
func (r *reporter) figure(name string, v float64) { r.cur.Figures[name] = v }

// millis records a duration for -json, in milliseconds.
func (r *reporter) millis(name string, d time.Duration) {
	r.figure(name+"_ms", math.Round(float64(d.Microseconds()))/1000)
}

// explain writes one sentence that says what the act's numbers mean, wrapped for a terminal.
func (r *reporter) explain(format string, args ...any) {
	line := "  →"
	for _, word := range strings.Fields(fmt.Sprintf(format, args...)) {
		if len(line)+1+len(word) > 100 {
			fmt.Fprintln(r.w, line)
			line = "   "
		}
		line += " " + word
	}
	fmt.Fprintln(r.w, line)
}

// check records a verdict and writes its line; it returns ok.
func (r *reporter) check(what string, ok bool, format string, args ...any) bool {
	detail := fmt.Sprintf(format, args...)
	r.cur.Checks = append(r.cur.Checks, checkResult{What: what, OK: ok, Detail: detail})
	r.cur.OK = r.cur.OK && ok
	mark := "ok  "
	if !ok {
		mark = "FAIL"
	}
	lead := "  "
	if r.quiet {
		lead = fmt.Sprintf("act %d ", r.cur.Act)
	}
	fmt.Fprintf(r.v, "%s%s %s (%s)\n", lead, mark, what, detail)
	return ok
}

// progress is a bar on a terminal, and nothing at all otherwise (a nil *progress does nothing), so
// that CI logs and pipes get plain lines.
type progress struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// progress starts a bar of total steps, labelled; a step is a request, or 100 ms when tenths is set.
func (r *reporter) progress(label string, total int, tenths bool) *progress {
	if !r.tty {
		return nil
	}
	count := decor.CountersNoUnit("%d / %d")
	if tenths {
		count = decor.Any(func(s decor.Statistics) string {
			return fmt.Sprintf("%.1f s of %.1f s", float64(s.Current)/10, float64(s.Total)/10)
		})
	}
	p := mpb.New(mpb.WithOutput(r.out), mpb.WithWidth(40), mpb.WithRefreshRate(100*time.Millisecond))
	bar := p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name("  "+label, decor.WC{W: len(label) + 3, C: decor.DindentRight})),
		mpb.AppendDecorators(count),
		mpb.BarRemoveOnComplete())
	return &progress{p: p, bar: bar}
}

// add moves the bar n steps; safe for concurrent use.
func (p *progress) add(n int) {
	if p != nil {
		p.bar.IncrBy(n)
	}
}

// done removes the bar and waits until it is gone, so that the act's next lines are not drawn over.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.bar.Abort(true)
	p.p.Wait()
}
