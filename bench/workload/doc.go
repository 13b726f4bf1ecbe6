// Package workload runs the harness's workloads against one subject at a time and returns what
// it measured. Every workload starts its own fake API (internal/fakeapi), builds the subject
// against it, and stops both before it returns; every wait is bounded by the context it is given
// and by a per-request timeout.
//
//   - W1 HotPath: a valid token, GET answered 200 by an in-memory transport: ns/op and allocs/op.
//   - W2 Throughput: GET over loopback at a fixed concurrency: req/s, p50, p99.
//   - W3 Storm: n concurrent requests on an expired token behind a slow token endpoint, served
//     in memory: refresh calls, heap per parked request, time from the refresh answer to the last
//     reply; Broadcast is its plain-Go baseline.
//   - W4 Outage: every API answer 503 for a while under many workers: attempts per logical request,
//     and the time until every worker succeeds again.
//   - W5 Flaky: a fraction of answers 503 and of connections reset: goodput, duplicate orders, p99.
package workload
