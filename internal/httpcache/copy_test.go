package httpcache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Many storable GETs of large bodies at once, each read halfway and held open: the copies Tee keeps
// must together stay within the cache's bound (the copy buffers used to be allocated per body,
// outside it), the pool is counted exactly, every caller still gets its whole body, and what was
// copied in full is stored.
func TestCopiesStayWithinTheBound(t *testing.T) {
	const (
		maxBytes = 1 << 20
		bodySize = 256<<10 - 8<<10 // fits the entry limit (maxBytes/4) with its headers and URL
		callers  = 32
		half     = bodySize / 2
	)
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, bodySize) }
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		var i int
		_, _ = fmt.Sscanf(r.URL.Path, "/big/%d", &i)
		w.Header().Set("ETag", `"v1"`)
		if i%2 == 1 { // odd ones are chunked: the copy grows as the caller reads
			b := body(i)
			for len(b) > 0 {
				n := min(len(b), 16<<10)
				_, _ = w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(bodySize))
		_, _ = w.Write(body(i))
	})
	c := New(maxBytes, maxBytes/4)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	// No client Timeout: it would wrap the bodies, and the test reads the copies Tee installed.
	client := &http.Client{Transport: &cachingTransport{base: base, cache: c}}

	var halfway, done sync.WaitGroup
	resume := make(chan struct{})
	bodies := make([]io.ReadCloser, callers)
	got := make([][]byte, callers)
	errs := make([]error, callers)
	for i := range callers {
		halfway.Add(1)
		done.Go(func() {
			defer func() {
				if errs[i] != nil {
					halfway.Done() // if it failed before the halfway mark
				}
			}()
			resp, err := client.Get(fmt.Sprintf("%s/big/%d", o.URL, i))
			if errs[i] = err; err != nil {
				return
			}
			defer resp.Body.Close()
			bodies[i] = resp.Body
			first := make([]byte, half)
			if _, errs[i] = io.ReadFull(resp.Body, first); errs[i] != nil {
				return
			}
			halfway.Done()
			<-resume
			rest, err := io.ReadAll(resp.Body)
			got[i], errs[i] = append(first, rest...), err
		})
	}
	halfway.Wait()

	var held int64
	for _, b := range bodies {
		if tb, ok := b.(*teeBody); ok {
			tb.mu.Lock()
			held += int64(cap(tb.buf))
			tb.mu.Unlock()
		}
	}
	assert.Positive(t, held)
	assert.LessOrEqual(t, held, int64(maxBytes), "copy buffers of the bodies held open")
	assert.Equal(t, held, c.CopyBytes(), "the pool counts exactly what the buffers hold")
	assert.Positive(t, c.CopiesRefused())
	close(resume)
	done.Wait()

	for i := range callers {
		require.NoError(t, errs[i], "caller %d", i)
		assert.True(t, bytes.Equal(body(i), got[i]), "caller %d got its whole body", i)
	}
	assert.Zero(t, c.CopyBytes(), "every copy is released")
	assert.Positive(t, c.Len())
	checkInvariants(t, c)
	stored := 0
	for i := range callers {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/big/%d", o.URL, i), nil)
		if e := c.Lookup("", req); e != nil {
			stored++
			assert.True(t, strings.HasPrefix(string(e.Body), string(body(i)[:1])))
		}
	}
	assert.Equal(t, c.Len(), stored)
}
