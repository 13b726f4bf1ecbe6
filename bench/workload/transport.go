package workload

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// Static is an http.RoundTripper that answers every request with the same small JSON 200 without
// touching the network or looking at the token, so that W1 sees only the client's own cost.
type Static struct{}

// RoundTrip implements http.RoundTripper.
func (Static) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"id":"1"}`)),
		ContentLength: 10, Request: req,
	}, nil
}

// ErrConnectionLost is what InMemory returns when the handler aborts (as a reset connection would).
var ErrConnectionLost = errors.New("workload: in-memory connection lost")

// InMemory is an http.RoundTripper that serves each request with Handler on the caller's goroutine,
// without a socket: the fake API's logic (tokens, rotation, counters) with no kernel in between.
// OnServed, when set, is called after each request is served with its final status and the time.
// It is safe for concurrent use when Handler is.
type InMemory struct {
	Handler  http.Handler
	OnServed func(req *http.Request, status int, at time.Time)
}

// RoundTrip implements http.RoundTripper.
func (m *InMemory) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "127.0.0.1:1"
	defer func() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, ErrConnectionLost
		}
	}()
	rec := httptest.NewRecorder()
	m.Handler.ServeHTTP(rec, sreq)
	if m.OnServed != nil {
		m.OnServed(req, rec.Code, time.Now())
	}
	resp = rec.Result()
	resp.Request = req
	if resp.ContentLength < 0 {
		resp.ContentLength = int64(rec.Body.Len())
	}
	return resp, nil
}

// checkStatus is the error for an answer that should have been 200.
func checkStatus(status int, err error) error {
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("workload: status %d, want 200", status)
	}
	return nil
}
