// Command harness races the engine against raw net/http, x/oauth2, go-retryablehttp, resty and two
// hand-written refresh clients over five workloads, in interleaved rounds, and writes the results:
// benchmark-format lines and a summary on stdout, progress on stderr, RESULTS.md and a plot.
//
//	cd bench && go run ./cmd/harness            # full: 6 rounds, about 14 minutes
//	cd bench && go run ./cmd/harness -quick     # a little over a minute
//	cd bench && go run ./cmd/harness -only W1,W2 -subjects engine,oauth2 -out '' -plot ''
//	cd bench && go run ./cmd/harness -only W2 -concurrency 256 -subjects engine-otel,otelhttp -rounds 5
//	cd bench && go run ./cmd/harness -from results.json   # report a saved run again
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/resilientclient/resilient/bench/harness"
	"github.com/resilientclient/resilient/bench/subjects"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "short windows and two rounds: a little over a minute")
	rounds := flag.Int("rounds", 0, "rounds (default: 6, or 2 with -quick)")
	out := flag.String("out", "RESULTS.md", "Markdown report to write ('' for none)")
	plotFile := flag.String("plot", "throughput.svg", "W2 plot to write, .svg or .png ('' for none)")
	only := flag.String("only", "", "comma-separated workloads to run (W1,…,W5; default all)")
	names := flag.String("subjects", "", "comma-separated subjects to run (default all; raw is always run)")
	conc := flag.String("concurrency", "", "comma-separated W2 concurrencies to run (default the preset's)")
	timeout := flag.Duration("timeout", time.Hour, "give up after this long")
	save := flag.String("json", "results.json", "raw results to write, for -from ('' for none)")
	from := flag.String("from", "", "report the results of an earlier run (its -json file) instead of measuring")
	flag.Parse()

	if *from != "" {
		f, err := os.Open(*from)
		if err != nil {
			return err
		}
		defer f.Close()
		res, err := harness.Load(f)
		if err != nil {
			return err
		}
		return report(res, *out, *plotFile)
	}

	cfg := harness.Full()
	if *quick {
		cfg = harness.Quick()
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	if *only != "" {
		cfg.Workloads = strings.Split(*only, ",")
	}
	if *conc != "" {
		cs, err := concurrencies(*conc)
		if err != nil {
			return err
		}
		cfg.Concurrency = cs
		cfg.PerRequestAt = slices.DeleteFunc(cfg.PerRequestAt, func(c int) bool { return !slices.Contains(cs, c) })
	}
	if *names != "" {
		list := strings.Split(*names, ",")
		if !contains(list, subjects.Raw) {
			list = append([]string{subjects.Raw}, list...)
		}
		ss, err := subjects.Named(list...)
		if err != nil {
			return err
		}
		cfg.Subjects = ss
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	res, err := harness.Run(ctx, cfg, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	if *save != "" {
		if err := writeFile(*save, res.Save); err != nil {
			return err
		}
	}
	return report(res, *out, *plotFile)
}

// report writes the summary to stdout, and the plot and the Markdown report where asked.
func report(res *harness.Results, out, plotFile string) error {
	if err := res.WriteText(os.Stdout); err != nil {
		return err
	}
	if plotFile != "" && len(res.Cases("W2")) > 0 {
		if err := res.WritePlot(plotFile); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", plotFile)
	}
	if out != "" {
		// The hand-written section of the file being replaced is kept, at the end.
		old, err := os.ReadFile(out)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return writeFile(out, func(w io.Writer) error {
			if err := res.WriteMarkdown(w, plotFile); err != nil {
				return err
			}
			if hand := harness.HandSection(string(old)); hand != "" {
				_, err := io.WriteString(w, "\n"+hand)
				return err
			}
			return nil
		})
	}
	return nil
}

// writeFile creates file and fills it with write.
func writeFile(file string, write func(io.Writer) error) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", file)
	return nil
}

// concurrencies parses a comma-separated list of positive numbers.
func concurrencies(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c <= 0 {
			return nil, fmt.Errorf("-concurrency: %q is not a positive number", f)
		}
		out = append(out, c)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
