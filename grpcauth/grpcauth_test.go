package grpcauth_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/grpcauth"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// authenticate checks a call's bearer token against the fake API's tokens, as a gRPC server in
// front of the same identity provider would, answering UNAUTHENTICATED for an expired one.
func authenticate(ctx context.Context, api *fakeapi.Server) error {
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	if v := md.Get("authorization"); len(v) == 1 {
		tok, _ = strings.CutPrefix(v[0], "Bearer ")
	}
	if _, ok := api.Authenticate(tok); !ok {
		return status.Error(codes.Unauthenticated, "invalid or expired access token")
	}
	return nil
}

// startGRPC serves the standard health service on a loopback port behind a bearer-token check, and
// returns its address; it stops when stop is called.
func startGRPC(api *fakeapi.Server) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := authenticate(ctx, api); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := authenticate(ss.Context(), api); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	return lis.Addr().String(), func() { gs.Stop(); <-done }
}

// setup runs the fake API, a gRPC server checking its tokens, an engine signed in as ada with the
// API's refresh endpoint, and a gRPC client authenticated by the engine (plaintext loopback).
func setup(t *testing.T) (*fakeapi.Server, *engine.Engine, healthpb.HealthClient) {
	api := fakeapi.Start(fakeapi.Options{AccessTTL: time.Hour})
	t.Cleanup(api.Close)
	addr, stop := startGRPC(api)
	t.Cleanup(stop)
	eng, err := engine.New(engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh), engine.WithTokens(api.Login("ada")))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, eng.Close(ctx))
	})
	opts := append(grpcauth.DialOptions(eng, grpcauth.WithoutTransportSecurity()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return api, eng, healthpb.NewHealthClient(conn)
}

// 1,000 concurrent RPCs and 1,000 concurrent HTTP requests on one engine, after the server expired
// every token: one refresh between them, every call succeeds, the refresh token is never replayed.
func TestGRPCAndHTTPShareOneRefresh(t *testing.T) {
	api, eng, hc := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	for round := int64(1); round <= 2; round++ {
		api.ExpireAccessTokens()
		var failed atomic.Int64
		var firstErr atomic.Pointer[error]
		fail := func(err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}
		fanOut(2000, func(i int) {
			if i%2 == 0 {
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					fail(err)
				} else if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					fail(errors.New(resp.GetStatus().String()))
				}
				return
			}
			if _, err := engine.GetJSON[map[string]string](ctx, eng, "/me"); err != nil {
				fail(err)
			}
		})
		if p := firstErr.Load(); p != nil {
			t.Fatalf("round %d: %d calls failed, the first with %v", round, failed.Load(), *p)
		}
		st := api.Stats()
		assert.Equal(t, round, st.RefreshCalls, "one refresh per round for gRPC and HTTP together")
		assert.Zero(t, st.ReuseDetected)
		assert.Zero(t, st.Revocations)
	}
}

// 1,000 concurrent unary RPCs alone after the server expired every token: the interceptor's report
// is what starts the one refresh, and every call is resent once with the new token.
func TestGRPCStormOneRefresh(t *testing.T) {
	api, _, hc := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api.ExpireAccessTokens()
	var failed atomic.Int64
	fanOut(1000, func(int) {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			failed.Add(1)
		}
	})
	assert.Zero(t, failed.Load())
	assert.EqualValues(t, 1, api.Stats().RefreshCalls)
}

// An UNAUTHENTICATED end of a stream reports the token: the refresh starts without a unary call.
func TestGRPCStreamReportsRejection(t *testing.T) {
	api, _, hc := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api.ExpireAccessTokens()
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = w.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.Eventually(t, func() bool { return api.Stats().RefreshCalls == 1 }, 5*time.Second, 5*time.Millisecond,
		"the stream's rejection started the refresh")
	w, err = hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	resp, err := w.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	assert.EqualValues(t, 1, api.Stats().RefreshCalls)
}

// When the session cannot be saved, the call's error is the engine's typed error with gRPC's
// UNAUTHENTICATED code, and the call is not sent again.
func TestGRPCSessionExpired(t *testing.T) {
	api, _, hc := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api.SetTokenFailure(http.StatusBadRequest, `{"error":"invalid_grant"}`, 1)
	api.ExpireAccessTokens()
	before := api.Stats().APIRequests
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	var ge *grpcauth.Error
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	assert.EqualValues(t, 1, api.Stats().APIRequests-before, "one send: the retry waits for a token that never comes")
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	require.ErrorIs(t, err, engine.ErrSessionExpired)
	assert.EqualValues(t, 1, api.Stats().APIRequests-before, "no token, no send")
}

// Without WithoutTransportSecurity the credentials require TLS, and gRPC refuses to send the token
// over plaintext.
func TestGRPCRequiresTransportSecurity(t *testing.T) {
	api := fakeapi.Start(fakeapi.Options{})
	defer api.Close()
	addr, stop := startGRPC(api)
	defer stop()
	eng, err := engine.New(engine.WithBaseURL(api.URL()), engine.WithTokens(api.Login("ada")))
	require.NoError(t, err)
	defer func() { assert.NoError(t, eng.Close(context.Background())) }()

	creds := grpcauth.PerRPCCredentials(eng)
	assert.True(t, creds.RequireTransportSecurity())
	assert.False(t, grpcauth.PerRPCCredentials(eng, grpcauth.WithoutTransportSecurity()).RequireTransportSecurity())
	opts := append(grpcauth.DialOptions(eng), grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(addr, opts...)
	if err == nil {
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	}
	require.Error(t, err)
	assert.Zero(t, api.Stats().APIRequests, "no token reached the server")
}

// fanOut runs f(i) for i in [0, n) on n goroutines at once and waits for all of them.
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
