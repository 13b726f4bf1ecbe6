package engine

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Reading an error answer's body to build its *APIError (for the error handler and the typed
// helpers) waits at most errorBodyIdle for each piece of it and errorBodyWait in all: a server that
// sends a few bytes and stalls costs the caller this much, not its whole deadline. The error is then
// made from what arrived (and the status and headers).
const (
	errorBodyIdle = 250 * time.Millisecond
	errorBodyWait = time.Second
	errorBodyRead = 32 << 10 // the most bytes one read of the body asks for
)

// errBodyClosed is what reading an error body gives after Close, as net/http's bodies do.
var errBodyClosed = errors.New("engine: read on a closed response body")

// readErrorBody reads the first bytes of an error answer's body, at most limit of them and only
// what arrives within the bounds above (or before ctx ends), without taking the rest from the
// caller: it returns those bytes and the body to give the caller in place of resp.Body, which yields
// everything the server sends, those bytes first.
//
// The reads run on a goroutine of their own, since a Read cannot be given a deadline. When the
// whole body arrived in time, the goroutine has ended; otherwise it goes on reading for the caller,
// one piece ahead at most, and ends when the body does or when the caller closes it.
func readErrorBody(ctx context.Context, body io.ReadCloser, limit int64) ([]byte, io.ReadCloser) {
	if body == nil || body == http.NoBody {
		return nil, body
	}
	b := &errorBody{src: body, pieces: make(chan piece), stop: make(chan struct{})}
	go b.run()
	end := time.Now().Add(errorBodyWait)
	wait := time.NewTimer(errorBodyIdle)
	defer wait.Stop()
	for int64(len(b.pending)) < limit && b.err == nil {
		select {
		case p := <-b.pieces:
			b.pending, b.err = append(b.pending, p.data...), p.err
			wait.Reset(min(errorBodyIdle, time.Until(end)))
		case <-wait.C:
			return clipBytes(b.pending, limit), b
		case <-ctx.Done():
			return clipBytes(b.pending, limit), b
		}
	}
	return clipBytes(b.pending, limit), b
}

func clipBytes(b []byte, n int64) []byte {
	if int64(len(b)) > n {
		return b[:n]
	}
	return b
}

// piece is one read of the body: its bytes and its error.
type piece struct {
	data []byte
	err  error
}

// errorBody is an error answer's body being read on a goroutine: what was read already (pending),
// then the goroutine's pieces. Read is for one goroutine at a time; Close may be called alongside.
type errorBody struct {
	src     io.ReadCloser
	pieces  chan piece    // the reading goroutine's reads, handed over one at a time
	stop    chan struct{} // closed by Close: the reading goroutine stops
	once    sync.Once
	pending []byte // read, not yet given to the caller
	err     error  // the body's end (io.EOF) or failure, once read
}

// run reads the body until it ends or Close stops it. Its first read is small (most error bodies
// are), and each read that fills its buffer doubles the next one, up to errorBodyRead.
func (b *errorBody) run() {
	size := 512
	for {
		buf := make([]byte, size)
		n, err := b.src.Read(buf)
		if n == size {
			size = min(2*size, errorBodyRead)
		}
		select {
		case b.pieces <- piece{buf[:n], err}:
		case <-b.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read gives what was read already, then what the reading goroutine reads.
func (b *errorBody) Read(p []byte) (int, error) {
	select {
	case <-b.stop:
		return 0, errBodyClosed
	default:
	}
	for len(b.pending) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		select {
		case x := <-b.pieces:
			b.pending, b.err = x.data, x.err
		case <-b.stop:
			return 0, errBodyClosed
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// Close stops the reading goroutine and closes the body, which ends a read it has under way.
func (b *errorBody) Close() error {
	var err error
	b.once.Do(func() {
		close(b.stop)
		err = b.src.Close()
	})
	return err
}
