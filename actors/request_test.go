package actors

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/messages"
)

func TestOriginMatches(t *testing.T) {
	o, err := ParseOrigin("https://API.example.com/v1")
	require.NoError(t, err)
	assert.Equal(t, "https://api.example.com:443", o.String())
	v6, err := ParseOrigin("http://[::1]:8080")
	require.NoError(t, err)
	for _, tc := range []struct {
		origin Origin
		url    string
		want   bool
	}{
		{o, "https://api.example.com/items", true},
		{o, "https://api.example.com:443/items", true},
		{o, "HTTPS://Api.Example.Com/items", true},
		{o, "http://api.example.com/items", false},
		{o, "https://api.example.com:8443/items", false},
		{o, "https://api.example.com.evil.test/items", false},
		{o, "https://evil.test/?u=https://api.example.com", false},
		{v6, "http://[::1]:8080/x", true},
		{v6, "http://[::1]/x", false},
		{v6, "http://127.0.0.1:8080/x", false},
	} {
		u, err := url.Parse(tc.url)
		require.NoError(t, err)
		assert.Equal(t, tc.want, tc.origin.Matches(u), "%s ~ %s", tc.origin, tc.url)
	}
	for _, bad := range []string{"", "/relative", "ftp://x", "http://", "::"} {
		_, err := ParseOrigin(bad)
		assert.Error(t, err, bad)
	}
}

// abortingBody blocks in Read until its request's context ends, then fails with an error of its own
// that says nothing of why: what a transport that does not pass context causes on would return.
type abortingBody struct{ ctx context.Context }

func (b abortingBody) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, errors.New("stream aborted")
}
func (b abortingBody) Close() error { return nil }

// abortingTransport answers 200 with an abortingBody; with writerTo, the body also has WriteTo.
type abortingTransport struct{ writerTo bool }

type abortingWriterTo struct{ abortingBody }

func (b abortingWriterTo) WriteTo(io.Writer) (int64, error) {
	_, err := b.Read(nil)
	return 0, err
}

func (a abortingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body io.ReadCloser = abortingBody{req.Context()}
	if a.writerTo {
		body = abortingWriterTo{abortingBody{req.Context()}}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: body, Header: http.Header{}, Request: req}, nil
}

// A body read cut short by Close fails with an error that wraps ErrClosed even when the transport's
// own error does not say why, whether read with Read or with WriteTo (io.Copy), on any context.
func TestBodyCutByCloseSaysErrClosed(t *testing.T) {
	cancellable, stop := context.WithCancel(context.Background())
	defer stop()
	for _, ctx := range []context.Context{context.Background(), cancellable} {
		for _, writerTo := range []bool{false, true} {
			for _, read := range []func(io.Reader) error{
				func(r io.Reader) error { _, err := io.ReadAll(r); return err },
				func(r io.Reader) error { _, err := io.Copy(&bytes.Buffer{}, r); return err },
			} {
				var f Inflight
				r := &Requester{Base: abortingTransport{writerTo: writerTo}, Inflight: &f}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.test/stream", nil)
				require.NoError(t, err)
				resp, err := r.RoundTrip(req)
				require.NoError(t, err)
				go func() {
					time.Sleep(10 * time.Millisecond)
					_ = f.Close(context.Background())
				}()
				err = read(resp.Body)
				assert.ErrorIs(t, err, messages.ErrClosed, "writerTo %v", writerTo)
				assert.ErrorContains(t, err, "stream aborted", "the transport's own error is kept")
				require.NoError(t, resp.Body.Close())
			}
		}
	}
}
