// Package bench measures the engine against the alternatives. It is a module of its own
// (github.com/resilientclient/resilient/bench, with a replace pointing at the repository root), so
// that the peers it races (x/oauth2, go-retryablehttp, resty, gonum/plot for the chart) never become
// dependencies of the engine's users.
//
// The harness runs five workloads over every subject in interleaved rounds and writes RESULTS.md
// and a plot:
//
//	cd bench && go run ./cmd/harness            # full run, about 14 minutes
//	cd bench && go run ./cmd/harness -quick     # a little over a minute
//	cd bench && go test -race -short -count=1 ./...
//
// This package holds go test benchmarks for profiling one subject at a time (BenchmarkSubjects) and
// the engine's own hot-path and parked-request benchmarks:
//
//	cd bench && go test -run '^$' -bench . -benchmem -count 6 . | tee new.txt
//
// Subdirectories: subjects (the clients raced), workload (W1–W5), harness (rounds, statistics,
// reports), cmd/harness (the command).
package bench
