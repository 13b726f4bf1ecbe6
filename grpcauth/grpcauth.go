// Package grpcauth puts an engine's token actor behind gRPC clients: per-RPC credentials that attach
// the engine's access token, and client interceptors that report an UNAUTHENTICATED answer as a
// rejected token, so gRPC and HTTP calls on one engine share one token and one refresh.
//
// It is a module of its own so that users of the engine who do not use gRPC never download it.
//
//	opts := append(grpcauth.DialOptions(eng), grpc.WithTransportCredentials(credentials.NewTLS(nil)))
//	conn, err := grpc.NewClient(target, opts...)
package grpcauth

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilientclient/resilient/engine"
)

// Option configures the per-RPC credentials.
type Option func(*options)

type options struct{ insecure bool }

// WithoutTransportSecurity lets the credentials be sent on connections without TLS: a loopback
// test, or a sidecar that terminates TLS on the same host. Default: the credentials require
// transport security (privacy and integrity), and gRPC refuses to send them over plaintext.
func WithoutTransportSecurity() Option { return func(o *options) { o.insecure = true } }

// DialOptions is what a gRPC client needs to authenticate with eng: PerRPCCredentials plus both
// interceptors. Pass them to grpc.NewClient along with the transport credentials.
func DialOptions(eng *engine.Engine, opts ...Option) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithPerRPCCredentials(PerRPCCredentials(eng, opts...)),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor(eng)),
		grpc.WithChainStreamInterceptor(StreamClientInterceptor(eng)),
	}
}

// PerRPCCredentials returns gRPC per-RPC credentials that attach eng's access token to every call as
// "authorization: Bearer <token>", from the engine's snapshot while the token is valid, else after
// the engine's one refresh. Alone they never report a rejected token: add UnaryClientInterceptor
// and StreamClientInterceptor (DialOptions does) so that an UNAUTHENTICATED answer starts the
// refresh. Safe for concurrent use.
func PerRPCCredentials(eng *engine.Engine, opts ...Option) credentials.PerRPCCredentials {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return perRPC{eng: eng, requireTLS: !o.insecure}
}

type perRPC struct {
	eng        *engine.Engine
	requireTLS bool
}

// GetRequestMetadata gets the token for one call and remembers it for the interceptors.
func (p perRPC) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if p.requireTLS {
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "grpcauth: the token needs a secure connection: %v", err)
		}
	}
	c, err := p.eng.Credential(ctx)
	rec, _ := ctx.Value(callKey{}).(*call)
	if err != nil {
		rec.failed(err)
		return nil, &Error{Err: err, code: codeOf(err)}
	}
	rec.used(c)
	return map[string]string{"authorization": c.Header()}, nil
}

// RequireTransportSecurity is true unless WithoutTransportSecurity was given.
func (p perRPC) RequireTransportSecurity() bool { return p.requireTLS }

// Error is a call that failed because the engine had no token to give (the session expired, a
// refresh failed, the engine closed): errors.Is and errors.As find the engine's error in it, and
// status.Code reads a gRPC code from it.
type Error struct {
	Err  error
	code codes.Code
}

// Error describes the engine's failure; it never contains a token.
func (e *Error) Error() string { return "grpcauth: no token for the call: " + e.Err.Error() }

// Unwrap returns the engine's error.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus is the call's status: UNAUTHENTICATED when the session expired, CANCELED or
// DEADLINE_EXCEEDED when the call's context ended, UNAVAILABLE otherwise.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.code, e.Error()) }

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, engine.ErrClosed):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, engine.ErrSessionExpired), errors.Is(err, engine.ErrInvalidConfig):
		return codes.Unauthenticated
	default:
		return codes.Unavailable
	}
}

// callKey marks a call's context with the record the credentials fill in.
type callKey struct{}

// call records which credential one RPC was sent with, or why it got none. The transport calls
// GetRequestMetadata on its own goroutine, hence the mutex.
type call struct {
	mu   sync.Mutex // guards the fields below
	cred engine.Credential
	sent bool  // cred was attached
	err  error // the engine gave no credential
}

func (c *call) used(cred engine.Credential) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.cred, c.sent = cred, true
	c.mu.Unlock()
}

func (c *call) failed(err error) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *call) result() (engine.Credential, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cred, c.sent, c.err
}

// UnaryClientInterceptor reports an UNAUTHENTICATED answer to a call sent with the engine's token as
// a rejection of that token (one refresh however many calls and HTTP requests report it) and sends
// the call once more with the token that replaces it: an UNAUTHENTICATED answer means the server
// refused the credentials before handling the call. A second UNAUTHENTICATED is returned as it is
// (and reported). When the engine had no token to give, the error is an *Error. Safe for concurrent
// use.
func UnaryClientInterceptor(eng *engine.Engine) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		first := &call{}
		err := invoker(context.WithValue(ctx, callKey{}, first), method, req, reply, cc, opts...)
		cred, sent, cerr := first.result()
		if cerr != nil {
			return &Error{Err: cerr, code: codeOf(cerr)}
		}
		if !sent || status.Code(err) != codes.Unauthenticated {
			return err
		}
		if _, rerr := eng.Rejected(ctx, cred); rerr != nil {
			return &Error{Err: rerr, code: codeOf(rerr)}
		}
		again := &call{}
		err = invoker(context.WithValue(ctx, callKey{}, again), method, req, reply, cc, opts...)
		cred, sent, cerr = again.result()
		if cerr != nil {
			return &Error{Err: cerr, code: codeOf(cerr)}
		}
		if sent && status.Code(err) == codes.Unauthenticated {
			eng.ReportRejected(cred)
		}
		return err
	}
}

// StreamClientInterceptor reports an UNAUTHENTICATED answer on a stream sent with the engine's token
// as a rejection of that token, so the next call gets a new one. A stream is not resent: the
// messages already sent on it cannot be replayed. Safe for concurrent use.
func StreamClientInterceptor(eng *engine.Engine) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		rec := &call{}
		cs, err := streamer(context.WithValue(ctx, callKey{}, rec), desc, cc, method, opts...)
		s := &stream{eng: eng, rec: rec}
		if err != nil {
			if _, _, cerr := rec.result(); cerr != nil {
				return nil, &Error{Err: cerr, code: codeOf(cerr)}
			}
			s.check(err)
			return nil, err
		}
		s.ClientStream = cs
		return s, nil
	}
}

// stream watches a client stream's errors for an UNAUTHENTICATED answer.
type stream struct {
	grpc.ClientStream
	eng  *engine.Engine
	rec  *call
	once sync.Once
}

func (s *stream) check(err error) {
	if status.Code(err) != codes.Unauthenticated {
		return
	}
	if cred, sent, _ := s.rec.result(); sent {
		s.once.Do(func() { s.eng.ReportRejected(cred) })
	}
}

// RecvMsg receives a message; an UNAUTHENTICATED end of the stream reports the token.
func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.check(err)
	return err
}

// Header waits for the header; an UNAUTHENTICATED answer reports the token.
func (s *stream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	s.check(err)
	return md, err
}
