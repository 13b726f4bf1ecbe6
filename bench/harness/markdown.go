package harness

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Command is how the harness is run; RESULTS.md names it.
const Command = "cd bench && go run ./cmd/harness"

// descriptions say what each workload does and measures, for RESULTS.md.
var descriptions = map[string]string{
	"W1": "One GET with a valid token answered 200 by an in-memory `http.RoundTripper` (no network, no server), the body read and closed; " +
		"each subject warmed up, then timed in short batches interleaved with the other subjects' (subject after subject in a new random " +
		"order for each batch round, a full collection before each batch so that no subject pays for another's garbage); " +
		"ns/op is the median of its batches, allocations are counted over all of them as `testing.B` does. *Added ns/op* is " +
		"the median over batch rounds of the subject's batch minus raw net/http's batch of the same batch round, which cancels most " +
		"of the machine's drift; the target's ratio is taken between the engine's and oauth2's median added costs. Two cases: *hotpath*, " +
		"requests on a context that can be cancelled (as a server handler's), and *hotpath-background*, on `context.Background`.",
	"W2": "Closed loop: *c* workers each send `GET /items/{n}` with a valid token to the loopback fake API and wait for the answer before the next. " +
		"A warm-up opens the connections; requests started in the window after it are counted. Client and server share the two cores. " +
		"Requests share one context (cancellable, as a worker pool's), except in the *-ctx-per-request* case, where each has a deadline of " +
		"its own (as a server's handlers would send them).",
	"W3": "*n* requests at once on an expired token; the token endpoint answers after 20 ms. The fake API is served in memory (its handler called " +
		"without a socket), so 10,000 connections do not drown the clients. Token calls are held until every request has been made and the " +
		"process has stopped allocating (all parked, or stuck in their own refresh calls); then the live heap is read and the endpoint released. " +
		"*known-expiry*: the client was given the token's past expiry (as `expires_in` or a JWT would tell it). *401-storm*: opaque tokens, " +
		"the client learns from 401s. *Release* runs from the first successful token answer to the last reply. The baseline " +
		"`chan-broadcast` is plain Go measured in the same round: *n* goroutines each holding a prepared GET, parked on one channel, " +
		"released by closing it, each then setting the token and sending through raw net/http over the same in-memory API (the work every " +
		"client must do after a refresh, with ideal parking); `chan-wake` is the same broadcast timed to the last goroutine awake, without " +
		"sending. *Heap per parked* includes the goroutine and the GET each caller holds (the baseline's row shows what those alone cost: the " +
		"engine's target is judged on what it adds to them); goroutine stacks are not heap. Subjects that " +
		"cannot refresh (raw) are not run. The large case runs the engine alone.",
	"W4": "Workers each send a GET, wait for its outcome, pause 20 ms, and start again. After a warm-up, every API answer is 503 (no " +
		"Retry-After) for the outage; then the API recovers and each worker goes on until it has had a 200. *Attempts ÷ logical* counts, for " +
		"the logical requests started during the outage, every attempt the server received for them (by a request-id header), retries after " +
		"the outage included. *Recovery* runs from the end of the outage until every worker has had a 200.",
	"W5": "Open loop: requests start on schedule at a fixed rate whatever earlier ones are doing, so a subject that retries pays in latency, " +
		"not in requests never sent. Every fifth is `POST /orders` with a body of its own, the rest GETs. After a warm-up, the fake API answers " +
		"5 % of API requests 503 before doing anything, and for 1 % does the work (creates the order) and then resets the connection (TCP RST) " +
		"instead of answering. *Goodput* is requests that ended in a 2xx per second of the window; *duplicates* are orders the server created " +
		"twice for one logical POST (a resend without an Idempotency-Key after a lost answer); latency runs from the scheduled start, failures " +
		"included.",
}

// method is the part of RESULTS.md that says how the harness keeps itself fair.
const method = `## Method

- Every subject runs the same workloads against the same in-process fake API (` + "`internal/fakeapi`" + `: rotating refresh
  tokens with reuse detection, knobs for delays and failures), one fresh server and one fresh transport per run.
- Subjects are interleaved: in each round every workload case runs every subject once, in an order shuffled afresh for
  each round, so no subject always follows the same neighbour. Medians are over rounds; *±* is half the range (max − min) over the median. Every ratio is taken between two
  runs of the same round, then the median of those ratios is reported.
- Every subject gets the same ` + "`*http.Transport`" + `: a clone of ` + "`http.DefaultTransport`" + ` whose idle pool holds as many
  connections per host as the highest concurrency, given through the hook its docs name (` + "`oauth2.HTTPClient`" + ` context
  value, ` + "`retryablehttp.Client.HTTPClient`" + `, ` + "`resty.NewWithClient`" + `, ` + "`engine.WithTransport`" + `). The engine's own
  default transport's pool is ` + "`engine.DefaultMaxIdleConnsPerHost`" + ` per host.
- Loggers are silenced where a subject logs per request or per attempt (retryablehttp's default logger, resty's).
- All servers listen on 127.0.0.1; every wait is bounded (per-request timeouts, a deadline per run).
`

// caveats are what a reader should doubt.
const caveats = `## Caveats

- Two shared, noisy cores: the client, the fake API and the harness compete for them. Read the ratios, which pair runs of
  the same round, rather than the absolute numbers; trust differences of a few percent only when every round agrees.
- W2 measures the client and the server together: a faster client leaves more CPU to the server in the same process.
- W3 runs without sockets; over loopback, releasing 10,000 requests means opening up to 10,000 connections, which
  measures the kernel more than the client.
- W3's release is compared with a baseline that sends the same requests after a channel broadcast, not with the bare wake
  (shown as ` + "`chan-wake`" + `): a client cannot answer before it has sent.
- The peers' refresh-on-401 wrappers (retryablehttp, resty) are the smallest correct ones their hooks allow (a mutex and a
  "was this token already replaced?" check), written for this harness; the naive client is deliberately what is often
  written instead. W3's numbers for those rows measure the wrapper as much as the library.
- retryablehttp waits at least 1 s and resty at least 100 ms before a retry, by their defaults; W4 and W5 keep those
  defaults, as their docs do.
- W5's duplicates depend on whether a subject adds an Idempotency-Key itself; the workload adds none.
`

// WriteMarkdown writes RESULTS.md: how it was made, the targets, one table per workload case, the
// subjects' configurations, the method and the caveats.
func (r *Results) WriteMarkdown(out io.Writer, plotFile string) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `%s` (%s mode: %d rounds) on %s, in %s.\n\n", r.command(), r.Config.Mode, r.Config.Rounds,
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))
	rev := r.Revision
	if rev == "" {
		rev = "not recorded"
	}
	fmt.Fprintf(&b, "The engine measured: repository revision %s.\n\n", rev)
	fmt.Fprintf(&b, "| machine | |\n|---|---|\n| CPU | %s |\n| cores (GOMAXPROCS) | %d (%d) |\n| memory | %.0f GiB |\n| OS | %s/%s, kernel %s |\n| Go | %s |\n"+
		"| load average (1, 5, 15 min) at start / end | %s / %s |\n| harness peak resident memory | %.0f MiB |\n\n",
		m.CPU, m.Cores, m.GOMAXPROCS, m.MemoryGiB, m.OS, m.Arch, m.Kernel, m.GoVersion, r.LoadStart, r.LoadEnd, r.PeakRSSMiB)
	fmt.Fprintf(&b, "Cells are medians over rounds with ±half their range; ×raw (×broadcast in W3) is the median of per-round ratios.\n\n")

	b.WriteString("## The engine's targets\n\n| workload | target | measured (median) | status |\n|---|---|---|---|\n")
	for _, v := range r.Targets() {
		status := v.Status
		if status == Missed {
			status = "**missed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", v.Workload, v.Target, v.Measured, status)
	}
	b.WriteString("\n")

	for _, w := range Workloads {
		cases := r.Cases(w)
		if len(cases) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", titles[w], descriptions[w])
		fmt.Fprintf(&b, "%s\n\n", r.parameters(w))
		if w == "W2" && plotFile != "" {
			fmt.Fprintf(&b, "![throughput and p99 by concurrency](%s)\n\n", plotFile)
		}
		for _, c := range cases {
			if len(cases) > 1 {
				fmt.Fprintf(&b, "### %s\n\n", c)
			}
			rows := r.table(w, c)
			for i, row := range rows {
				fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
				if i == 0 {
					b.WriteString("|" + strings.Repeat("---|", len(row)) + "\n")
				}
			}
			b.WriteString("\n")
			for _, s := range r.SubjectsIn(w, c) {
				for _, e := range dedupe(r.Errors(w, c, s)) {
					fmt.Fprintf(&b, "- %s failed: %s\n", s, e)
				}
			}
		}
	}

	b.WriteString("## Subjects and how each is configured\n\n| subject | configuration |\n|---|---|\n")
	for _, s := range r.Config.Subjects {
		setup := s.Setup
		if why, ok := r.Unavailable[s.Name]; ok {
			setup += " **Not measured in this run: " + why + ".**"
		}
		fmt.Fprintf(&b, "| %s | %s |\n", s.Name, setup)
	}
	b.WriteString("\n" + method + "\n" + caveats)
	_, err := io.WriteString(out, b.String())
	return err
}

// HandHeading starts the section of RESULTS.md written by hand (measurements the harness does not
// make, such as callgrind instruction counts): it is the last section, and the harness keeps it
// when it writes the file again.
const HandHeading = "## Measured by hand"

// HandSection returns the hand-written section of an earlier RESULTS.md (from HandHeading to the
// end), or "" when it has none.
func HandSection(old string) string {
	i := strings.Index(old, "\n"+HandHeading+"\n")
	if i < 0 {
		return ""
	}
	return old[i+1:]
}

// command is the command line that reproduces this run.
func (r *Results) command() string {
	if r.Config.Mode == "quick" {
		return Command + " -quick"
	}
	return Command
}

// parameters states workload w's sizes in this run.
func (r *Results) parameters(w string) string {
	c := r.Config
	switch w {
	case "W1":
		return fmt.Sprintf("Timed for %v per subject per round, in %d batches.", c.HotPathTime, c.HotPathBatches)
	case "W2":
		return fmt.Sprintf("Concurrency %v; warm-up %v, window %v per run; idle pool %d per host.", c.Concurrency, c.Warmup, c.Window, c.MaxIdle)
	case "W3":
		return fmt.Sprintf("n = %d (and %d for the engine alone); token endpoint %v.", c.StormN, c.StormBigN, c.TokenDelay)
	case "W4":
		return fmt.Sprintf("%d workers, outage %v, pause %v, recovery awaited up to %v.", c.OutageWork, c.Outage, c.Think, c.MaxRecovery)
	case "W5":
		return fmt.Sprintf("%.0f requests/s for %v, every %dth a POST; %.0f %% 503, %.0f %% reset.", c.FlakyRate, c.FlakyWindow, c.PostEvery,
			100*c.Flakiness.Unavailable, 100*c.Flakiness.Reset)
	}
	return ""
}

// dedupe returns the distinct strings of ss, sorted.
func dedupe(ss []string) []string {
	set := map[string]bool{}
	for _, s := range ss {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
