// Package clustertest runs replicas of the engine as separate OS processes, for the tests and
// benchmarks of cluster mode (engine.WithCluster) with real coordinators: each store's module has a
// small member program that calls Member with its coordinator, and its tests drive several of them
// with Start.
//
// A member is one engine on the fake API (whose address it gets in its environment), in cluster
// mode on the coordinator its program opens. It reads one command per line on stdin and answers
// each with one JSON line on stdout (Reply):
//
//	get N MS     N concurrent GET /me, each with a deadline of MS milliseconds
//	family KEY   the next get goes through the family KEY ("" for the default family)
//	set A R      SetTokens with access token A and refresh token R, on that family
//	cut          cut the member off from its coordinator: every call blocks until its context ends,
//	             as behind a network partition that drops packets
//	heal         end the cut
//	close        Close the engine, then check that no goroutine of it is left; the process exits
//
// Members print nothing else on stdout. They are built without -race (see Build).
package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/engine"
)

// Environment of a member.
const (
	EnvAPI      = "CLUSTERTEST_API"       // the fake API's base URL
	EnvTokenURL = "CLUSTERTEST_TOKEN_URL" // its RFC 6749 token endpoint
	EnvTTL      = "CLUSTERTEST_TTL"       // the coordinator's lease time to live, for the store to use (a Go duration)
	EnvStore    = "CLUSTERTEST_STORE"     // where the store is (a file, endpoints): the member program's to read
	EnvRefresh  = "CLUSTERTEST_REFRESH"   // the engine's refresh timeout (a Go duration); "": the default
)

// Reply is a member's answer to one command.
type Reply struct {
	Ready  bool           `json:"ready,omitempty"`  // the engine started
	OK     int            `json:"ok,omitempty"`     // get: requests answered 200 with the family's user
	Failed map[string]int `json:"failed,omitempty"` // get: failures by kind (see Kind)
	Users  map[string]int `json:"users,omitempty"`  // get: the users the API saw, by count
	Last   int64          `json:"last,omitempty"`   // get: when the last request returned (Unix nanoseconds)
	Closed bool           `json:"closed,omitempty"` // close: Close returned
	Leaks  string         `json:"leaks,omitempty"`  // close: goroutines left after Close, if any
	Err    string         `json:"err,omitempty"`    // the command failed
}

// Kind names the kind of a request's error, by the engine's sentinels.
func Kind(err error) string {
	switch {
	case errors.Is(err, engine.ErrClusterUnavailable):
		return "cluster_unavailable"
	case errors.Is(err, engine.ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, engine.ErrRefreshFailed):
		return "refresh_failed"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	var ae *engine.APIError
	if errors.As(err, &ae) {
		return "status_" + strconv.Itoa(ae.Status)
	}
	return "other"
}

// Member runs a member process: open makes the coordinator (and the function that closes it),
// given the lease time to live from the environment. It returns the process's exit code.
func Member(open func(ttl time.Duration) (engine.Coordinator, func() error, error)) int {
	// The goroutines running before the coordinator and the engine exist: the only ones close may
	// leave. (IgnoreCurrent taken after close would ignore every goroutine left.)
	before := goleak.IgnoreCurrent()
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		_ = out.Encode(Reply{Err: err.Error()})
		return 1
	}
	ttl, err := time.ParseDuration(os.Getenv(EnvTTL))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", EnvTTL, err))
	}
	real, closeCoord, err := open(ttl)
	if err != nil {
		return fail(err)
	}
	coord := &partition{Coordinator: real}
	opts := []engine.Option{engine.WithBaseURL(os.Getenv(EnvAPI)),
		engine.WithTokenEndpoint(os.Getenv(EnvTokenURL), engine.OAuth2Refresh), engine.WithCluster(coord)}
	if v := os.Getenv(EnvRefresh); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", EnvRefresh, err))
		}
		opts = append(opts, engine.WithRefreshTimeout(d))
	}
	e, err := engine.New(opts...)
	if err != nil {
		return fail(err)
	}
	_ = out.Encode(Reply{Ready: true})
	var target engine.Target = e
	want := "" // the user the API should see: the family's key, or any for the default family
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "get":
			n, err1 := strconv.Atoi(f[1])
			ms, err2 := strconv.Atoi(f[2])
			if err := errors.Join(err1, err2); err != nil {
				_ = out.Encode(Reply{Err: err.Error()})
				continue
			}
			_ = out.Encode(get(target, n, time.Duration(ms)*time.Millisecond, want))
		case len(f) >= 1 && f[0] == "family":
			key := strings.TrimSpace(strings.TrimPrefix(in.Text(), "family"))
			if key == "" {
				target, want = e, ""
				_ = out.Encode(Reply{Ready: true})
				continue
			}
			fam, err := e.Family(key)
			if err != nil {
				_ = out.Encode(Reply{Err: err.Error()})
				continue
			}
			target, want = fam, key
			_ = out.Encode(Reply{Ready: true})
		case len(f) == 3 && f[0] == "set":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := setTokens(ctx, target, engine.Tokens{Access: f[1], Refresh: f[2]})
			cancel()
			if err != nil {
				_ = out.Encode(Reply{Err: err.Error()})
				continue
			}
			_ = out.Encode(Reply{Ready: true})
		case len(f) == 1 && (f[0] == "cut" || f[0] == "heal"):
			coord.cut.Store(f[0] == "cut")
			_ = out.Encode(Reply{Ready: true})
		case len(f) == 1 && f[0] == "close":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := e.Close(ctx)
			cancel()
			if cerr := closeCoord(); err == nil {
				err = cerr
			}
			r := Reply{Closed: err == nil}
			if err != nil {
				r.Err = err.Error()
			}
			if leak := goleak.Find(before); leak != nil {
				r.Leaks = leak.Error()
			}
			_ = out.Encode(r)
			return 0
		default:
			_ = out.Encode(Reply{Err: "unknown command " + strconv.Quote(in.Text())})
		}
	}
	return 0
}

// setTokens is SetTokens on the default family or on a family.
func setTokens(ctx context.Context, target engine.Target, t engine.Tokens) error {
	switch x := target.(type) {
	case *engine.Engine:
		return x.SetTokens(ctx, t)
	case *engine.Family:
		return x.SetTokens(ctx, t)
	}
	return errors.New("unknown target")
}

// get sends n concurrent GET /me through target, each with deadline d.
func get(target engine.Target, n int, d time.Duration, want string) Reply {
	var mu sync.Mutex
	r := Reply{Failed: map[string]int{}, Users: map[string]int{}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			got, err := engine.GetJSON[map[string]string](ctx, target, "/me")
			now := time.Now().UnixNano()
			mu.Lock()
			defer mu.Unlock()
			r.Last = max(r.Last, now)
			switch {
			case err != nil:
				r.Failed[Kind(err)]++
			case want != "" && got["user"] != want:
				r.Failed["wrong_user"]++
			default:
				r.OK++
				r.Users[got["user"]]++
			}
		}()
	}
	close(start)
	wg.Wait()
	return r
}

// partition is the member's coordinator, which the cut command cuts off: its calls then block until
// their context ends, and fail.
type partition struct {
	engine.Coordinator
	cut atomic.Bool
}

func (p *partition) blocked(ctx context.Context) error {
	if !p.cut.Load() {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("partitioned from the coordinator: %w", context.Cause(ctx))
}

func (p *partition) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	if err := p.blocked(ctx); err != nil {
		return engine.Tokens{}, 0, err
	}
	return p.Coordinator.Load(ctx, family)
}

func (p *partition) Commit(ctx context.Context, family string, version uint64, t engine.Tokens) (uint64, error) {
	if err := p.blocked(ctx); err != nil {
		return 0, err
	}
	return p.Coordinator.Commit(ctx, family, version, t)
}

func (p *partition) Lock(ctx context.Context, family string) (func(context.Context) error, error) {
	if err := p.blocked(ctx); err != nil {
		return nil, err
	}
	return p.Coordinator.Lock(ctx, family)
}
