package workload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// Expiry says what the client knows about the expired token in W3.
type Expiry int

const (
	// KnownExpiry: the client was given the token's expiry, already past (as a JWT exp or
	// expires_in would tell it); a client that reads it can park requests before sending them.
	KnownExpiry Expiry = iota
	// Unknown401: opaque tokens without expiry; the client learns from 401s (a 401 storm).
	Unknown401
)

// String names the mode for tables: known-expiry or 401-storm.
func (e Expiry) String() string {
	if e == Unknown401 {
		return "401-storm"
	}
	return "known-expiry"
}

// StormResult is W3 for one subject.
type StormResult struct {
	N          int
	OK, Failed int64 // replies 200, and the rest (errors and other statuses)
	// Refresh calls received by the token endpoint, refresh tokens replayed, and token families
	// revoked for it.
	RefreshCalls, ReuseDetected, Revocations int64
	Unauthorized                             int64 // API answers 401
	// Parked is how many requests were still waiting when the token endpoint was released (the
	// others had already failed, or never needed the refresh).
	Parked int64
	// HeapPerParked is the live heap per parked request, in bytes: what the client and the
	// request it was given hold (goroutine stacks are not heap); zero when none was parked.
	HeapPerParked float64
	// Release runs from the first successful token answer to the last reply; zero unless every
	// request ended in a 200 (a release that failed requests is not one).
	Release time.Duration
	Total   time.Duration // from the first request to the last reply
}

// StormTimeout bounds one storm, from the first request to the last reply.
const StormTimeout = 2 * time.Minute

// Storm sends n concurrent GETs through s on an expired token. The fake API is served in memory
// (InMemory), so the kernel's socket costs do not drown the client's. Token calls are held until
// every request has been made and the process has gone quiet (the requests are parked, or stuck in
// their own refresh calls); then the live heap is read, the token endpoint is released, and it
// answers after tokenDelay.
func Storm(ctx context.Context, s subjects.Subject, n int, mode Expiry, tokenDelay time.Duration) (StormResult, error) {
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour, Opaque: mode == Unknown401})
	defer srv.Close()
	tok := srv.Login(user)
	if mode == KnownExpiry {
		tok.Expiry = time.Now().Add(-time.Second)
	}
	srv.ExpireAccessTokens()
	srv.SetTokenDelay(tokenDelay)
	release := srv.HoldTokenCalls()
	defer release()

	var answered atomic.Int64 // first successful token answer, unix ns
	mem := &InMemory{Handler: srv.Handler(), OnServed: func(r *http.Request, status int, at time.Time) {
		if status == http.StatusOK && r.URL.Path == "/oauth/token" {
			answered.CompareAndSwap(0, at.UnixNano())
		}
	}}
	c, err := s.New(subjects.Env{BaseURL: srv.URL(), TokenURL: srv.OAuth2TokenURL(), Tokens: tok, Transport: mem})
	if err != nil {
		return StormResult{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	defer closeClient(c)
	ctx, cancel := withTimeout(ctx, StormTimeout)
	defer cancel()

	settle(ctx)
	heapBefore := liveHeap()
	var started, ok, failed atomic.Int64
	var last maxTime
	done := make(chan struct{}, n)
	t0 := time.Now()
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			req := subjects.Request{Method: http.MethodGet, URL: srv.URL() + "/items/" + strconv.Itoa(i%100)}
			started.Add(1)
			status, err := c.Do(ctx, req)
			last.observe(time.Now())
			if checkStatus(status, err) == nil {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}()
	}
	if err := waitQuiet(ctx, func() bool { return started.Load() == int64(n) }, n); err != nil {
		return StormResult{}, fmt.Errorf("%s: requests did not settle: %w", s.Name, err)
	}
	heapParked := liveHeap()
	parked := int64(n) - ok.Load() - failed.Load()
	release()
	for range n {
		select {
		case <-done:
		case <-ctx.Done():
			return StormResult{}, fmt.Errorf("%s: %d of %d requests unanswered: %w", s.Name, int64(n)-ok.Load()-failed.Load(), n, ctx.Err())
		}
	}
	st := srv.Stats()
	res := StormResult{
		N: n, OK: ok.Load(), Failed: failed.Load(),
		RefreshCalls: st.RefreshCalls, ReuseDetected: st.ReuseDetected, Revocations: st.Revocations, Unauthorized: st.Unauthorized,
		Parked: parked,
		Total:  last.get().Sub(t0),
	}
	if parked > 0 {
		res.HeapPerParked = float64(int64(heapParked)-int64(heapBefore)) / float64(parked)
	}
	if a := answered.Load(); a != 0 && res.OK == int64(n) && last.get().UnixNano() > a {
		res.Release = last.get().Sub(time.Unix(0, a))
	}
	return res, nil
}

// BroadcastResult is W3's plain-Go baseline: n goroutines blocked on one channel, released by
// closing it.
type BroadcastResult struct {
	N int
	// Wake runs from close to the last goroutine awake.
	Wake time.Duration
	// WakeSend runs from close to the last reply when each goroutine, once awake, sets a valid token
	// on the GET it prepared and sends it through a raw http.Client over the same in-memory fake API:
	// the work every client must do after a refresh, with ideal parking.
	WakeSend time.Duration
	// HeapPerParked is the live heap per parked goroutine of the WakeSend run, its prepared
	// *http.Request (without the token yet) included.
	HeapPerParked float64
	OK            int64 // replies 200 in the WakeSend run
}

// Broadcast measures the baseline for n parked requests (see BroadcastResult).
func Broadcast(ctx context.Context, n int) (BroadcastResult, error) {
	ctx, cancel := withTimeout(ctx, StormTimeout)
	defer cancel()
	res := BroadcastResult{N: n}

	// Wake only.
	gate := make(chan struct{})
	var awake atomic.Int64
	var last maxTime
	done := make(chan struct{}, n)
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			awake.Add(1)
			<-gate
			last.observe(time.Now())
		}()
	}
	if err := waitQuiet(ctx, func() bool { return awake.Load() == int64(n) }, n); err != nil {
		close(gate)
		return res, err
	}
	t0 := time.Now()
	close(gate)
	if err := waitN(ctx, done, n); err != nil {
		return res, err
	}
	res.Wake = last.get().Sub(t0)

	// Wake, then send.
	srv := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour})
	defer srv.Close()
	tok := srv.Login(user)
	client := &http.Client{Transport: &InMemory{Handler: srv.Handler()}}
	settle(ctx)
	heapBefore := liveHeap()
	gate = make(chan struct{})
	var ready, ok atomic.Int64
	var lastReply maxTime
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/items/"+strconv.Itoa(i%100), nil)
			if err != nil {
				return
			}
			ready.Add(1)
			<-gate
			// The token is set once awake: a caller parked in a client holds a plain GET (the client
			// adds the token), so the parked heap compares like with like.
			req.Header.Set("Authorization", "Bearer "+tok.Access)
			resp, err := client.Do(req)
			if err == nil {
				if status, err := drainStatus(resp); err == nil && status == http.StatusOK {
					ok.Add(1)
				}
			}
			lastReply.observe(time.Now())
		}()
	}
	if err := waitQuiet(ctx, func() bool { return ready.Load() == int64(n) }, n); err != nil {
		close(gate)
		return res, err
	}
	heapParked := liveHeap()
	t0 = time.Now()
	close(gate)
	if err := waitN(ctx, done, n); err != nil {
		return res, err
	}
	res.WakeSend = lastReply.get().Sub(t0)
	res.HeapPerParked = float64(int64(heapParked)-int64(heapBefore)) / float64(n)
	res.OK = ok.Load()
	if res.OK != int64(n) {
		return res, fmt.Errorf("workload: broadcast: %d of %d replies were 200", res.OK, n)
	}
	return res, nil
}

// waitN receives n times from done, or fails when ctx ends.
func waitN(ctx context.Context, done <-chan struct{}, n int) error {
	for i := range n {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("workload: %d of %d goroutines still running: %w", n-i, n, ctx.Err())
		}
	}
	return nil
}

// waitQuiet waits until all() holds and then until the process stops allocating: every goroutine
// has reached the point where it blocks. The allocation count moving by less than a few objects
// per goroutine-thousand over three polls 20 ms apart counts as quiet; at least n×5 µs is waited.
func waitQuiet(ctx context.Context, all func() bool, n int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	minWait := time.Now().Add(time.Duration(n) * 5 * time.Microsecond)
	var prev uint64
	calm := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if !all() {
			continue
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.Mallocs-prev < 64 {
			calm++
		} else {
			calm = 0
		}
		prev = ms.Mallocs
		if calm >= 3 && time.Now().After(minWait) {
			return nil
		}
	}
}

// settle waits (at most two seconds) until the number of goroutines has stopped changing, so that
// what an earlier run left winding down (an engine's actors after Close, say) is gone before the
// heap is read: memory it frees later would be subtracted from the parked requests' share.
func settle(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(2 * time.Second)
	prev, same := runtime.NumGoroutine(), 0
	for same < 3 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n := runtime.NumGoroutine(); n == prev {
			same++
		} else {
			prev, same = n, 0
		}
	}
}

// liveHeap is the heap in use after three full collections with pauses between them: the
// first moves sync.Pool contents aside and queues finalizers, the pauses let finalizers run, the
// later ones free what both held.
func liveHeap() uint64 {
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// drainStatus reads and closes resp's body and returns its status.
func drainStatus(resp *http.Response) (int, error) {
	_, err := io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, err
}
