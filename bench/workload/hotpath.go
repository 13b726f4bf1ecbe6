package workload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
)

// HotPathResult is W1 for one subject: the cost of one GET with a valid token answered 200 by
// Static, the body read and closed.
type HotPathResult struct {
	NsPerOp float64 // median over the batches
	// AddedNsPerOp is the median over the batches of NsPerOp minus the base subject's NsPerOp in
	// the same batch round: pairing batches run a moment apart cancels most of the machine's
	// drift. Zero for the base itself, or without one.
	AddedNsPerOp float64
	AllocsPerOp  float64 // over all batches
	BytesPerOp   float64 // over all batches
	Ops          int     // how many were timed, in all
}

// hotPathBase is the origin W1's requests go to; Static answers them all.
const hotPathBase = "http://api.test"

// hotPathClient is one subject being measured.
type hotPathClient struct {
	s         subjects.Subject
	c         subjects.Client
	batchOps  int
	perBatch  []float64 // ns/op of each batch
	ops       int
	allocs    uint64
	allocated uint64
}

// HotPath measures every subject of ss for about d each. All are built and warmed up first (the
// warm-up also sizes their batches); then they are timed in batches interleaved subject after
// subject (in a new random order for each batch round), batch after batch, so that whatever else
// the machine does hits all of them alike. A full collection runs before each batch, untimed, so
// that each subject pays for its own garbage and not for its predecessor's. A
// subject's ns/op is the median of its batches; its allocations are counted over all of them, as
// testing.B counts them; its added cost is taken batch by batch against the subject named base
// (when base is among ss). A subject that fails gets an error instead of a result.
//
// Requests are sent on reqCtx (a context that can be cancelled, as a server handler's is, or
// context.Background: clients may pay differently for each); ctx bounds the run.
func HotPath(ctx, reqCtx context.Context, ss []subjects.Subject, base string, d time.Duration, batches int) (map[string]HotPathResult, map[string]error) {
	batches = max(batches, 1)
	errs := map[string]error{}
	env := subjects.Env{
		BaseURL:   hotPathBase,
		TokenURL:  hotPathBase + "/oauth/token", // never called: the token is valid for an hour
		Tokens:    subjects.Tokens{Access: "access-token", Refresh: "refresh-token", Expiry: time.Now().Add(time.Hour)},
		Transport: Static{},
	}
	req := subjects.Request{Method: http.MethodGet, URL: hotPathBase + "/items/1"}
	var cs []*hotPathClient
	defer func() {
		for _, hc := range cs {
			closeClient(hc.c)
		}
	}()
	for _, s := range ss {
		c, err := s.New(env)
		if err != nil {
			errs[s.Name] = err
			continue
		}
		hc := &hotPathClient{s: s, c: c}
		cs = append(cs, hc)
		// Warm up for a fifth of d, and size a batch from what it took.
		start, n := time.Now(), 0
		for time.Since(start) < d/5 || n < 10 {
			if err := checkStatus(c.Do(reqCtx, req)); err != nil {
				errs[s.Name] = err
				break
			}
			n++
		}
		perOp := time.Since(start) / time.Duration(n)
		hc.batchOps = max(10, int(d/time.Duration(batches)/max(perOp, 1)))
	}

	var before, after runtime.MemStats
	rng := rand.New(rand.NewPCG(uint64(len(cs)), uint64(batches)))
	for range batches {
		for _, i := range rng.Perm(len(cs)) {
			hc := cs[i]
			if errs[hc.s.Name] != nil {
				continue
			}
			runtime.GC()
			if err := ctx.Err(); err != nil {
				errs[hc.s.Name] = err
				continue
			}
			runtime.ReadMemStats(&before)
			start := time.Now()
			for range hc.batchOps {
				if err := checkStatus(hc.c.Do(reqCtx, req)); err != nil {
					errs[hc.s.Name] = fmt.Errorf("%s: %w", hc.s.Name, err)
					break
				}
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			hc.perBatch = append(hc.perBatch, float64(elapsed.Nanoseconds())/float64(hc.batchOps))
			hc.ops += hc.batchOps
			hc.allocs += after.Mallocs - before.Mallocs
			hc.allocated += after.TotalAlloc - before.TotalAlloc
		}
	}

	var baseBatches []float64
	for _, hc := range cs {
		if hc.s.Name == base && errs[base] == nil {
			baseBatches = hc.perBatch
		}
	}
	out := map[string]HotPathResult{}
	for _, hc := range cs {
		if errs[hc.s.Name] != nil || hc.ops == 0 {
			continue
		}
		r := HotPathResult{
			NsPerOp:     median(hc.perBatch),
			AllocsPerOp: float64(hc.allocs) / float64(hc.ops),
			BytesPerOp:  float64(hc.allocated) / float64(hc.ops),
			Ops:         hc.ops,
		}
		if len(baseBatches) == len(hc.perBatch) && hc.s.Name != base {
			added := make([]float64, len(hc.perBatch))
			for k := range added {
				added[k] = hc.perBatch[k] - baseBatches[k]
			}
			r.AddedNsPerOp = median(added)
		}
		out[hc.s.Name] = r
	}
	return out, errs
}

// median returns the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// closeClient closes c, waiting at most 10 s.
func closeClient(c subjects.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Close(ctx)
}
