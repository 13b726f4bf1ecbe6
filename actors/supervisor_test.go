package actors

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/internal/retry"
	"github.com/resilientclient/resilient/messages"
)

func testPolicy() RetryPolicy {
	return RetryPolicy{
		MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: time.Second, MaxElapsed: time.Minute,
		MaxRetryAfter: time.Minute, Decide: retry.Decider(false),
		BudgetRatio: 0.5, BudgetPerSecond: 0, BudgetWindow: 10 * time.Second,
		IdempotencyKeys: true, NewKey: NewIdempotencyKey,
	}
}

// retryEvents delivers the supervisor's events to a channel, as the names of the methods called.
type retryEvents chan string

func (c retryEvents) RetryScheduled(string, string, int, time.Duration, string) { c <- "scheduled" }
func (c retryEvents) RetryBudgetExhausted(string, string, string)               { c <- "exhausted" }

func spawnSupervisor(t *testing.T, p RetryPolicy, events RetryEvents) *Supervisor {
	t.Helper()
	system := newSystem(nil)
	s, err := SpawnSupervisor(system, SupervisorConfig{Policy: p, Events: events})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Stop(context.Background()))
		system.Shutdown()
	})
	return s
}

// Cool-downs are per host, published for requests to read without a message, and dropped from the
// published view the moment they end.
func TestCoolDownsArePerHostAndPruned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := spawnSupervisor(t, testPolicy(), nil)
		now := time.Now()
		s.coolDown(context.Background(), "a.test", now.Add(time.Second), now.Add(time.Hour), 429)
		cd, ok := s.coolingUntil("a.test", now)
		assert.True(t, ok)
		assert.Equal(t, now.Add(time.Second), cd.until)
		assert.Equal(t, now.Add(time.Hour), cd.at, "what the server asked for is kept for RetryLaterError")
		_, ok = s.coolingUntil("b.test", now)
		assert.False(t, ok)

		s.coolDown(context.Background(), "a.test", now.Add(500*time.Millisecond), now.Add(500*time.Millisecond), 503) // shorter: ignored
		cd, _ = s.coolingUntil("a.test", now)
		assert.Equal(t, now.Add(time.Second), cd.until)

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Nil(t, s.cool.Load(), "an ended cool-down must leave the published view")
	})
}

// Budgets are per host: one host exhausting its retries does not stop another's. Every refusal and
// every grant is published.
func TestBudgetsArePerHost(t *testing.T) {
	var events []string
	published := make(retryEvents, 100)
	s := spawnSupervisor(t, testPolicy(), published)
	ctx := context.Background()
	now := time.Now()
	for range 4 {
		s.budget("a.test").Request(now)
		s.budget("b.test").Request(now)
	}
	ask := func(host string) error {
		return s.askRetry(ctx, messages.RetryAsk{Host: host, Method: http.MethodGet, Attempt: 2, Reason: retry.ReasonUnavailable})
	}
	// Ratio 0.5 of 4 requests: two retries each.
	require.NoError(t, ask("a.test"))
	require.NoError(t, ask("a.test"))
	assert.ErrorIs(t, ask("a.test"), messages.ErrRetryBudgetExhausted)
	require.NoError(t, ask("b.test"))
	require.NoError(t, ask("b.test"))
	assert.ErrorIs(t, ask("b.test"), messages.ErrRetryBudgetExhausted)
	for range 6 {
		events = append(events, <-published)
	}
	var scheduled, exhausted int
	for _, ev := range events {
		switch ev {
		case "scheduled":
			scheduled++
		case "exhausted":
			exhausted++
		}
	}
	assert.Equal(t, 4, scheduled)
	assert.Equal(t, 2, exhausted)
}

// After Stop nothing waits on the supervisor: asks fail with ErrClosed, cool-downs return.
func TestStoppedSupervisorAnswersNobody(t *testing.T) {
	system := newSystem(nil)
	defer system.Shutdown()
	s, err := SpawnSupervisor(system, SupervisorConfig{Policy: testPolicy()})
	require.NoError(t, err)
	require.NoError(t, s.Stop(context.Background()))
	require.NoError(t, s.Stop(context.Background()), "Stop twice")
	err = s.askRetry(context.Background(), messages.RetryAsk{Host: "a.test"})
	assert.ErrorIs(t, err, messages.ErrClosed)
	s.coolDown(context.Background(), "a.test", time.Now().Add(time.Hour), time.Now().Add(time.Hour), 429) // returns
}

// Idempotency keys are version 4 UUIDs and do not repeat.
func TestIdempotencyKeysAreUUIDv4(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := NewIdempotencyKey()
		require.Len(t, k, 36)
		assert.Equal(t, byte('4'), k[14])
		assert.Contains(t, "89ab", string(k[19]))
		assert.False(t, seen[k])
		seen[k] = true
	}
}
