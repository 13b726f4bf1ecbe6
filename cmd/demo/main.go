// Command demo tells the engine's story against an in-process fake API, and checks it:
//
//  1. the access token expires under 1,000 concurrent requests: the ones already on the wire meet a
//     401 (the tokens are opaque, so only the server knows), exactly one refresh runs, and all succeed;
//  2. tokens that live one second, under steady traffic: refreshed ahead of expiry, no 401 at all;
//  3. the refresh token is revoked while 1,000 requests wait: all fail fast with ErrSessionExpired,
//     one SessionExpired event, and signing in again (SetTokens) brings the engine back;
//  4. the API goes down for a second under 200 workers: a chart shows the retry budget holding
//     attempts close to requests, the requests that fail fail fast, and everyone succeeds afterwards;
//     then the answers of 10 of 100 orders are lost after the server created them: every order
//     succeeds, and none is created twice;
//  5. one request, traced with OpenTelemetry: it parks behind a refresh, its first send meets a 503,
//     its retry succeeds; the demo prints its trace as a tree, and the refresh's trace it links to.
//
// It exits 0 when every act went as it should, 1 when one did not, 2 on a usage error.
//
//	go run ./cmd/demo                 # the whole story, about ten seconds
//	go run ./cmd/demo -quiet          # verdict lines only (CI)
//	go run ./cmd/demo -json           # every act's verdict and figures as one JSON document
//	go run ./cmd/demo -otlp-endpoint localhost:4318  # also send every span and metric to a collector
//	go run ./cmd/demo -cluster        # 3 replica processes share a family: one refresh for all
//
// With -base-url it sends one GET to a real API instead, with the credentials its flags give
// (see -h): an access token, a refresh token and its endpoint, or client credentials.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const intro = `The demo runs five short acts against a fake API it starts on loopback, and checks each:
a token expiring under 1,000 concurrent requests (one refresh serves them all), tokens renewed
ahead of expiry, a revoked session failing fast, an outage held in check by the retry budget (with
a chart) and orders whose answers are lost yet created once, and one request's OpenTelemetry trace.
It takes about ten seconds and exits 0 when every act went as it should.

With -base-url it sends one GET to a real API instead, and prints the answer's status, the headers
that matter and the first lines of its body. With -cluster it starts 3 replica processes sharing one
family through a SQLite file, and shows one refresh serving all of them.

Usage:
  go run ./cmd/demo [flags]

Flags:
`

// run is the whole command: it parses args, writes to stdout and stderr, and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), intro)
		fs.PrintDefaults()
	}
	requests := fs.Int("requests", 1000, "concurrent requests in acts 1 and 3 (1 to 20000)")
	quiet := fs.Bool("quiet", false, "print only the verdict lines (for CI)")
	asJSON := fs.Bool("json", false, "print one JSON document with every act's verdict and figures, nothing else")
	otlp := fs.String("otlp-endpoint", "", "host:port of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. localhost:4318); every act's spans and metrics go there too")
	cluster := fs.Bool("cluster", false, "instead of the story: 3 replica processes share one family through a SQLite file (cluster mode); one refresh serves them all")
	var real realFlags
	real.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	usageErr := func(err error) int {
		fmt.Fprintln(stderr, "demo:", err)
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q: every setting is a flag", fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := real.validate(set); err != nil {
		return usageErr(err)
	}
	if real.baseURL != "" {
		for _, name := range []string{"requests", "quiet", "json", "otlp-endpoint", "cluster"} {
			if set[name] {
				return usageErr(fmt.Errorf("-%s applies to the story, not to -base-url", name))
			}
		}
		return realAPI(real, stdout, stderr)
	}
	if *cluster {
		for _, name := range []string{"requests", "quiet", "json", "otlp-endpoint"} {
			if set[name] {
				return usageErr(fmt.Errorf("-%s applies to the story, not to -cluster", name))
			}
		}
		return clusterAct(stdout, stderr)
	}
	if *requests < 1 || *requests > 20000 {
		return usageErr(fmt.Errorf("-requests must be between 1 and 20000, not %d", *requests))
	}
	if *quiet && *asJSON {
		return usageErr(errors.New("-quiet and -json both choose the output: give one"))
	}

	tel, err := startTelemetry(*otlp)
	if err != nil {
		fmt.Fprintln(stderr, "demo: -otlp-endpoint:", err)
		return 2
	}
	r := newReporter(stdout, *quiet, *asJSON)
	for _, act := range story(tel) {
		start := time.Now()
		act(r, *requests)
		r.end(time.Since(start))
	}
	tel.stop(r.w)
	ok := r.ok()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(summary{OK: ok, Requests: *requests, Acts: r.acts}); err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return 1
		}
	}
	if !ok {
		fmt.Fprintln(r.v, "demo: the story went wrong (see the lines marked FAIL)")
		return 1
	}
	fmt.Fprintln(r.v, "demo: every act went as it should")
	return 0
}

// story is the acts in the order they are told.
func story(tel *telemetry) []func(*reporter, int) {
	return []func(*reporter, int){herdAct, proactiveAct, expiryAct, outageAct, traceAct(tel.spans)}
}

// summary is what -json prints.
type summary struct {
	OK       bool         `json:"ok"`
	Requests int          `json:"requests"`
	Acts     []*actResult `json:"acts"`
}
