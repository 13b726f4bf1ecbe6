package telemetry

import (
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Hundreds of requests ask for the same attribute sets at once: each distinct key is made and kept
// once, and everyone gets the kept one.
func TestAttributeSetsConcurrent(t *testing.T) {
	tel, err := New(Config{MeterProvider: metricnoop.NewMeterProvider()})
	require.NoError(t, err)
	const keys, workers = 20, 300
	key := func(i int) attrKey {
		return attrKey{kind: kindSend, method: "GET", scheme: "http", host: "h" + strconv.Itoa(i) + ":8080", proto: "HTTP/1.1", status: 200}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[attrKey]map[any]bool{}
	start := make(chan struct{})
	for range workers {
		wg.Go(func() {
			<-start // all at once, on the same keys in the same order
			for i := range keys {
				k := key(i)
				o := tel.set(k)
				mu.Lock()
				if seen[k] == nil {
					seen[k] = map[any]bool{}
				}
				seen[k][&o[0]] = true
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Len(t, tel.sets, keys)
	for k, opts := range seen {
		if !assert.Len(t, opts, 1, "one kept set for %v", k) {
			break
		}
	}
}

// Past maxSets distinct keys nothing more is kept (a server redirecting to endless hosts cannot
// grow the engine), and the sets made are still right.
func TestAttributeSetsBounded(t *testing.T) {
	tel, err := New(Config{MeterProvider: metricnoop.NewMeterProvider()})
	require.NoError(t, err)
	for i := range maxSets + 10 {
		tel.set(attrKey{kind: kindLogical, method: "GET", scheme: "https", host: "h" + strconv.Itoa(i), status: 200})
	}
	assert.Len(t, tel.sets, maxSets)
	o := tel.set(attrKey{kind: kindLogical, method: "GET", scheme: "https", host: "beyond:444", status: 200})
	require.Len(t, o, 1)
}
