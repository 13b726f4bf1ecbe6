package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guptarohit/asciigraph"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

const (
	outageWorkers = 200
	slot          = 100 * time.Millisecond // one point of the chart
	outageSlots   = 10                     // the API is down for the first second
	chartSlots    = 15                     // and the chart goes on half a second after it is back
)

// outageAct: an outage under load, drawn, then orders whose answers are lost.
func outageAct(r *reporter, _ int) {
	r.begin(4, fmt.Sprintf("the API answers 503 for 1 s under %d workers; then 10 of 100 order answers are lost", outageWorkers))
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour})
	defer srv.Close()
	e, events := mustEngine(srv, srv.Login("ada"))
	defer closeEngine(e)

	o := runOutage(r, srv, e)
	amp := float64(o.attempts) / float64(max(o.logical, 1))
	r.printf("  outage: %d requests, %d attempts (×%.2f), %d retries, %d refused by the budget; %d requests failed\n",
		o.logical, o.attempts, amp, events.retries(), events.refusals(), len(o.failures))
	drawOutage(r, o)
	var failP50, failMax time.Duration
	if n := len(o.failures); n > 0 {
		failP50, failMax = o.failures[n/2], o.failures[n-1]
	}
	r.figure("outage_requests", float64(o.logical))
	r.figure("outage_attempts", float64(o.attempts))
	r.figure("amplification", float64(int(amp*100))/100)
	r.figure("retries", float64(events.retries()))
	r.figure("budget_refusals", float64(events.refusals()))
	r.figure("failed", float64(len(o.failures)))
	r.figure("failed_refused_by_budget", float64(o.refused))
	r.millis("failed_p50", failP50)
	r.millis("failed_slowest", failMax)
	r.explain("During the outage %d requests made %d attempts (×%.2f): the retry budget allowed %d retries "+
		"(one per %.0f requests) and refused %d, so the failing API saw barely more traffic than without retries; "+
		"%d requests failed, %d of them as soon as the budget refused their retry, without a backoff to wait "+
		"through: they failed fast (median %v, slowest %v, against an outage of 1 s).",
		o.logical, o.attempts, amp, events.retries(), float64(o.logical)/float64(max(events.retries(), 1)),
		events.refusals(), len(o.failures), o.refused, round(failP50), round(failMax))
	after := fire(r, e, outageWorkers, "API back")
	r.check("retries stayed within the budget", amp <= 1.25, "×%.2f", amp)
	// Failing fast is failing when the budget says no, rather than after every backoff of the policy;
	// timings depend on the machine, so the verdict counts instead.
	r.check("most failed requests failed fast: the budget refused their retry", o.refused*2 >= len(o.failures) && o.refused > 0,
		"%d of %d; median %v, slowest %v", o.refused, len(o.failures), round(failP50), round(failMax))
	r.check("everyone succeeds once the API is back", after.ok == outageWorkers, "%d of %d", after.ok, outageWorkers)

	// A fresh engine, so the outage's retries do not weigh on this story's budget.
	e2, _ := mustEngine(srv, srv.Login("bob"))
	defer closeEngine(e2)
	srv.SetOrderLoss(10)
	var orders sync.WaitGroup
	var placed atomic.Int64
	for i := range 100 {
		orders.Add(1)
		go func() {
			defer orders.Done()
			if _, err := engine.PostJSON[map[string]any](context.Background(), e2, "/orders", map[string]int{"item": i}); err == nil {
				placed.Add(1)
			}
		}()
	}
	orders.Wait()
	r.printf("  orders: %d placed by callers, %d created by the server\n", placed.Load(), srv.Orders())
	r.figure("orders_placed", float64(placed.Load()))
	r.figure("orders_created", float64(srv.Orders()))
	r.explain("The server created 10 orders and then lost their answers; the engine sent each POST again with "+
		"the same Idempotency-Key, so the server returned the order it had already created: %d placed, %d created.",
		placed.Load(), srv.Orders())
	r.check("every order succeeded", placed.Load() == 100, "%d of 100", placed.Load())
	r.check("no order created twice (one Idempotency-Key per order, on every attempt)", srv.Orders() == 100, "%d created", srv.Orders())
}

// outage is what runOutage saw.
type outage struct {
	logical, attempts int64     // during the outage
	perSlotAttempts   []float64 // per 100 ms, through the outage and after it
	perSlotLogical    []float64
	failures          []time.Duration // how long each failed request took, sorted
	refused           int             // failed requests whose retry the budget refused
}

// runOutage runs the workers through one second of 503s and half a second of health, counting
// logical requests (started by the workers) and attempts (received by the server) per 100 ms.
func runOutage(r *reporter, srv *fakeapi.Server, e *engine.Engine) outage {
	var logical atomic.Int64
	var stop atomic.Bool
	var mu sync.Mutex
	var o outage
	srv.SetAPIFailure(http.StatusServiceUnavailable, "", -1)
	base := srv.Stats().APIRequests
	var wg sync.WaitGroup
	for range outageWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				logical.Add(1)
				t0 := time.Now()
				if _, err := engine.GetJSON[map[string]any](context.Background(), e, "/items/1"); err != nil {
					d := time.Since(t0)
					mu.Lock()
					o.failures = append(o.failures, d)
					if errors.Is(err, engine.ErrRetryBudgetExhausted) {
						o.refused++
					}
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond) // the worker's own pause before its next job
			}
		}()
	}
	bar := r.progress("outage and recovery", chartSlots, true)
	tick := time.NewTicker(slot)
	lastA, lastL := base, int64(0)
	for i := range chartSlots {
		<-tick.C
		a, l := srv.Stats().APIRequests, logical.Load()
		o.perSlotAttempts = append(o.perSlotAttempts, float64(a-lastA))
		o.perSlotLogical = append(o.perSlotLogical, float64(l-lastL))
		lastA, lastL = a, l
		if i == outageSlots-1 {
			srv.SetAPIFailure(0, "", 0)
			o.attempts, o.logical = a-base, l
		}
		bar.add(1)
	}
	tick.Stop()
	stop.Store(true)
	wg.Wait()
	bar.done()
	slices.Sort(o.failures)
	return o
}

// drawOutage charts attempts and logical requests per 100 ms.
func drawOutage(r *reporter, o outage) {
	opts := []asciigraph.Option{
		asciigraph.Height(8),
		asciigraph.Width(4 * chartSlots),
		asciigraph.LowerBound(0),
		asciigraph.Offset(4),
		asciigraph.Precision(0),
		asciigraph.SeriesChars(asciigraph.DefaultCharSet, asciigraph.CreateCharSet("•")),
		// Point i counts the 100 ms that end at (i+1)·100 ms.
		asciigraph.XAxisRange(slot.Seconds(), (time.Duration(chartSlots) * slot).Seconds()),
		asciigraph.XAxisTickCount(chartSlots/2 + 1),
		asciigraph.XAxisValueFormatter(func(v float64) string { return fmt.Sprintf("%.1fs", v) }),
		asciigraph.Caption(fmt.Sprintf("per 100 ms: ── attempts the server received, •• requests the workers started; the API is down until %.1fs",
			(time.Duration(outageSlots) * slot).Seconds())),
	}
	if r.tty {
		opts = append(opts, asciigraph.SeriesColors(asciigraph.Red, asciigraph.Green))
	}
	r.printf("\n%s\n\n", asciigraph.PlotMany([][]float64{o.perSlotAttempts, o.perSlotLogical}, opts...))
}
