package workload

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// idHeader carries each logical request's number, so that the fake API can count the attempts each
// one made, retries included.
const idHeader = "X-Bench-Id"

// attemptCounter counts, on the server, the attempts of each logical request by its idHeader.
type attemptCounter struct {
	mu   sync.Mutex // guards byID
	byID map[int64]int64
}

func newAttemptCounter() *attemptCounter { return &attemptCounter{byID: map[int64]int64{}} }

// observe is a fakeapi Observe function.
func (a *attemptCounter) observe(r *http.Request) {
	id, err := strconv.ParseInt(r.Header.Get(idHeader), 10, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	a.byID[id]++
	a.mu.Unlock()
}

// sum is the attempts of the requests in ids.
func (a *attemptCounter) sum(ids []int64) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, id := range ids {
		n += a.byID[id]
	}
	return n
}

// OutageResult is W4 for one subject.
type OutageResult struct {
	Workers int
	// Logical requests started during the outage, the attempts the server received for them
	// (retries included, whenever they came), and those that did not end in a 200.
	Logical, Attempts, Failed int64
	Amplification             float64 // Attempts ÷ Logical
	// Recovery runs from the end of the outage until every worker has had a 200; when some never
	// had one within the limit, it is the limit and Recovered says how many did.
	Recovery  time.Duration
	Recovered int
}

// requestTimeout bounds each logical request of W4 and W5.
const requestTimeout = 30 * time.Second

// Outage runs workers that each send a GET, wait for its outcome, pause think, and start again.
// After a warm-up that opens the connections, the fake API answers every request 503 (no
// Retry-After) for outage; then it recovers, and each worker goes on until it has a 200 (at most
// maxRecovery after the end).
func Outage(ctx context.Context, s subjects.Subject, maxIdle, workers int, outage, think, maxRecovery time.Duration) (OutageResult, error) {
	counter := newAttemptCounter()
	r, err := newRig(s, fakeapi.Options{Observe: counter.observe}, maxIdle)
	if err != nil {
		return OutageResult{}, err
	}
	defer r.close()
	ctx, cancel := withTimeout(ctx, outage+maxRecovery+2*requestTimeout)
	defer cancel()
	if err := r.warm(ctx, workers); err != nil {
		return OutageResult{}, fmt.Errorf("%s: warm-up: %w", s.Name, err)
	}

	var ended atomic.Bool
	var endedAt atomic.Int64
	r.srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)
	stop := time.AfterFunc(outage, func() {
		r.srv.SetAPIFailure(0, "", 0)
		endedAt.Store(time.Now().UnixNano())
		ended.Store(true)
	})
	defer stop.Stop()

	var nextID, failed atomic.Int64
	outageIDs := make([][]int64, workers)
	recoveredAt := make([]time.Time, workers)
	url := r.srv.URL() + "/items/1"
	fanOut(workers, func(w int) {
		for {
			inOutage := !ended.Load()
			if !inOutage && (!recoveredAt[w].IsZero() || time.Since(time.Unix(0, endedAt.Load())) > maxRecovery) {
				return
			}
			if ctx.Err() != nil {
				return
			}
			id := nextID.Add(1)
			if inOutage {
				outageIDs[w] = append(outageIDs[w], id)
			}
			rctx, rcancel := withTimeout(ctx, requestTimeout)
			status, err := r.c.Do(rctx, subjects.Request{Method: http.MethodGet, URL: url, Header: http.Header{idHeader: {strconv.FormatInt(id, 10)}}})
			rcancel()
			ok := checkStatus(status, err) == nil
			if inOutage && !ok {
				failed.Add(1)
			}
			if ok && ended.Load() && recoveredAt[w].IsZero() {
				recoveredAt[w] = time.Now()
				if !inOutage {
					return
				}
			}
			sleep(ctx, think)
		}
	})
	if err := ctx.Err(); err != nil {
		return OutageResult{}, fmt.Errorf("%s: %w", s.Name, err)
	}

	res := OutageResult{Workers: workers, Failed: failed.Load()}
	var ids []int64
	for _, w := range outageIDs {
		ids = append(ids, w...)
	}
	res.Logical = int64(len(ids))
	res.Attempts = counter.sum(ids)
	if res.Logical > 0 {
		res.Amplification = float64(res.Attempts) / float64(res.Logical)
	}
	end := time.Unix(0, endedAt.Load())
	for _, at := range recoveredAt {
		if at.IsZero() {
			continue
		}
		res.Recovered++
		res.Recovery = max(res.Recovery, at.Sub(end))
	}
	if res.Recovered < workers {
		res.Recovery = maxRecovery
	}
	return res, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
