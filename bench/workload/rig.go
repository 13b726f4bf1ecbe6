package workload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/resilientclient/resilient/bench/subjects"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// rig is one subject on its own loopback fake API with its own transport.
type rig struct {
	srv *fakeapi.Server
	tr  *http.Transport
	c   subjects.Client
}

// user is the fake API user every workload signs in as.
const user = "bench"

// newRig starts a fake API with opts, signs in, and builds s on a fresh transport holding maxIdle
// idle connections.
func newRig(s subjects.Subject, opts fakeapi.Options, maxIdle int) (*rig, error) {
	if opts.AccessTTL == 0 {
		opts.AccessTTL = time.Hour
	}
	srv := fakeapi.Start(opts)
	tr := subjects.NewTransport(maxIdle)
	c, err := s.New(subjects.Env{BaseURL: srv.URL(), TokenURL: srv.OAuth2TokenURL(), Tokens: srv.Login(user), Transport: tr})
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	return &rig{srv: srv, tr: tr, c: c}, nil
}

// close stops the client, drops its connections and stops the server.
func (r *rig) close() error {
	err := closeClient(r.c)
	r.tr.CloseIdleConnections()
	r.srv.Close()
	return err
}

// warm sends n GETs at once so that every subject starts with the same pool of open connections;
// they must all succeed.
func (r *rig) warm(ctx context.Context, n int) error {
	errs := make([]error, n)
	fanOut(n, func(i int) {
		errs[i] = checkStatus(r.c.Do(ctx, subjects.Request{Method: http.MethodGet, URL: r.srv.URL() + "/items/1"}))
	})
	return errors.Join(errs...)
}

// fanOut runs f(i) for i in [0, n) on n goroutines released together, and waits for all of them.
func fanOut(n int, f func(i int)) {
	start := make(chan struct{})
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			f(i)
		}()
	}
	close(start)
	for range n {
		<-done
	}
}

// withTimeout is ctx bounded by d more.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
