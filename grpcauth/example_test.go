package grpcauth_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/grpcauth"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// You have a gRPC client: it gets the engine's token on every call, and a call answered
// UNAUTHENTICATED makes the engine refresh (once, shared with its HTTP requests) and is sent again.
// In production keep TLS (grpc.WithTransportCredentials(credentials.NewTLS(nil))) and leave out
// WithoutTransportSecurity, which this loopback example needs.
func ExampleDialOptions() {
	api := fakeapi.Start(fakeapi.Options{}) // the identity provider and an HTTP API
	defer api.Close()
	target, stop := startGRPC(api) // a gRPC service that accepts the same tokens
	defer stop()

	eng, err := engine.New(
		engine.WithBaseURL(api.URL()),
		engine.WithTokenEndpoint(api.OAuth2TokenURL(), engine.OAuth2Refresh),
		engine.WithTokens(api.Login("ada")),
	)
	if err != nil {
		panic(err)
	}
	defer func() { _ = eng.Close(context.Background()) }()

	opts := append(grpcauth.DialOptions(eng, grpcauth.WithoutTransportSecurity()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	api.ExpireAccessTokens() // the service rejects the token: one refresh, one resend
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err, api.Stats().RefreshCalls)
	// Output: SERVING <nil> 1
}
