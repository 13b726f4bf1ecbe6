package etcdstore_test

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
	"github.com/resilientclient/resilient/etcdstore"
)

func TestNewRejects(t *testing.T) {
	client := newClient(t, etcdEndpoint)
	for name, tc := range map[string]struct {
		client bool
		opts   []etcdstore.Option
	}{
		"nil client":    {client: false},
		"TTL below 1s":  {client: true, opts: []etcdstore.Option{etcdstore.WithTTL(999 * time.Millisecond)}},
		"TTL zero":      {client: true, opts: []etcdstore.Option{etcdstore.WithTTL(0)}},
		"TTL negative ": {client: true, opts: []etcdstore.Option{etcdstore.WithTTL(-time.Second)}},
		"a nil option":  {client: true, opts: []etcdstore.Option{etcdstore.WithPrefix("/x/"), nil}},
	} {
		t.Run(name, func(t *testing.T) {
			c := client
			if !tc.client {
				c = nil
			}
			coord, err := etcdstore.New(c, tc.opts...)
			assert.Nil(t, coord)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "etcdstore: "), err.Error())
		})
	}
}

func TestLoadMissingFamily(t *testing.T) {
	coord := newCoordinator(t, newClient(t, etcdEndpoint))
	tok, version, err := coord.Load(bounded(t, 5*time.Second), "nobody")
	require.NoError(t, err)
	assert.Equal(t, engine.Tokens{}, tok)
	assert.Zero(t, version)
}

// Every field comes back as committed, Expiry to the nanosecond and its zero value as zero.
func TestCommitLoadRoundTrip(t *testing.T) {
	coord := newCoordinator(t, newClient(t, etcdEndpoint))
	paris := time.FixedZone("CEST", 2*60*60)
	for name, tok := range map[string]engine.Tokens{
		"no expiry, no type":  {Access: "a1", Refresh: "r1"},
		"expiry with nanos":   {Access: "a2", Refresh: "r2", Expiry: time.Date(2031, 3, 4, 5, 6, 7, 123456789, paris)},
		"expiry in UTC, DPoP": {Access: "a3", Refresh: "r3", Expiry: time.Date(2030, 1, 1, 0, 0, 0, 1, time.UTC), Type: "DPoP"},
		"access only":         {Access: "a4"},
		"odd characters":      {Access: `"quoted" \ back`, Refresh: "ünï\n\x00", Type: "MAC"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := bounded(t, 5*time.Second)
			family := "family " + name
			v, err := coord.Commit(ctx, family, 0, tok)
			require.NoError(t, err)
			assert.NotZero(t, v)

			got, gotV, err := coord.Load(ctx, family)
			require.NoError(t, err)
			assert.Equal(t, v, gotV, "Load's version is the one Commit returned")
			assert.Equal(t, tok.Access, got.Access)
			assert.Equal(t, tok.Refresh, got.Refresh)
			assert.Equal(t, tok.Type, got.Type)
			assert.True(t, tok.Expiry.Equal(got.Expiry), "expiry %v, stored %v", got.Expiry, tok.Expiry)
			assert.Equal(t, tok.Expiry.IsZero(), got.Expiry.IsZero())
		})
	}
}

// Commit stores only at the version stored; anything else is ErrConflict and changes nothing.
func TestCommitConflicts(t *testing.T) {
	coord := newCoordinator(t, newClient(t, etcdEndpoint))
	ctx := bounded(t, 10*time.Second)
	first := engine.Tokens{Access: "a1", Refresh: "r1"}
	second := engine.Tokens{Access: "a2", Refresh: "r2"}

	v1, err := coord.Commit(ctx, "f", 0, first)
	require.NoError(t, err, "version 0 creates the key")
	v2, err := coord.Commit(ctx, "f", v1, second)
	require.NoError(t, err, "the version just read replaces the pair")
	assert.Greater(t, v2, v1, "versions grow with every commit")

	for name, version := range map[string]uint64{
		"0 when the key exists": 0,
		"a stale version":       v1,
		"a version from later":  v2 + 1000,
		"beyond int64":          1 << 63,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := coord.Commit(ctx, "f", version, engine.Tokens{Access: "spent", Refresh: "spent"})
			require.ErrorIs(t, err, engine.ErrConflict)
			assert.True(t, strings.HasPrefix(err.Error(), "etcdstore: "), err.Error())
			assert.NotContains(t, err.Error(), "spent")

			got, v, err := coord.Load(ctx, "f")
			require.NoError(t, err)
			assert.Equal(t, second, got, "the stored pair is unchanged")
			assert.Equal(t, v2, v)
		})
	}

	t.Run("a version when the key is absent", func(t *testing.T) {
		_, err := coord.Commit(ctx, "absent", v1, first)
		require.ErrorIs(t, err, engine.ErrConflict)
		got, v, err := coord.Load(ctx, "absent")
		require.NoError(t, err)
		assert.Equal(t, engine.Tokens{}, got)
		assert.Zero(t, v)
	})
}

// Fifty replicas read the same version and all try to commit on it: exactly one wins.
func TestCommitRace(t *testing.T) {
	for name, existing := range map[string]bool{"absent key": false, "existing key": true} {
		t.Run(name, func(t *testing.T) {
			coord := newCoordinator(t, newClient(t, etcdEndpoint))
			ctx := bounded(t, 30*time.Second)
			if existing {
				_, err := coord.Commit(ctx, "f", 0, engine.Tokens{Access: "a0", Refresh: "r0"})
				require.NoError(t, err)
			}
			const n = 50
			var (
				read, done sync.WaitGroup
				mu         sync.Mutex // guards wins, conflicts, others
				wins       []engine.Tokens
				conflicts  int
				others     []error
			)
			read.Add(n)
			for i := range n {
				done.Go(func() {
					_, v, err := coord.Load(ctx, "f")
					read.Done()
					read.Wait() // every Load before any Commit
					mine := engine.Tokens{Access: "a" + string(rune('A'+i)), Refresh: "r" + string(rune('A'+i))}
					if err == nil {
						_, err = coord.Commit(ctx, "f", v, mine)
					}
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins = append(wins, mine)
					case errors.Is(err, engine.ErrConflict):
						conflicts++
					default:
						others = append(others, err)
					}
				})
			}
			done.Wait()
			require.Empty(t, others)
			require.Equal(t, 1, len(wins), "exactly one commit wins")
			assert.Equal(t, n-1, conflicts)
			got, _, err := coord.Load(ctx, "f")
			require.NoError(t, err)
			assert.Equal(t, wins[0], got, "the winner's pair is stored")
		})
	}
}

// What etcd holds is a refresh token: a value that does not decode is an error that does not
// quote it, however it is broken.
func TestLoadUndecodableHoldsNoToken(t *testing.T) {
	client := newClient(t, etcdEndpoint)
	coord := newCoordinator(t, client)
	prefix := testPrefix(t)
	ctx := bounded(t, 10*time.Second)
	for name, value := range map[string]string{
		"not JSON":            `SECRET-refresh-token`,
		"JSON cut short":      `{"access":"SECRET-a","refresh":"SECRET-r`,
		"JSON null":           `null`,
		"a JSON string":       `"SECRET-refresh-token"`,
		"a JSON array":        `["SECRET-a","SECRET-r"]`,
		"a field's type":      `{"access":"SECRET-a","refresh":12345678901234567890}`,
		"expiry not RFC 3339": `{"access":"SECRET-a","refresh":"SECRET-r","expiry":"SECRET-e"}`,
		"empty":               ``,
	} {
		t.Run(name, func(t *testing.T) {
			family := "bad " + name
			_, err := client.Put(ctx, prefix+"tokens/"+url.PathEscape(family), value)
			require.NoError(t, err)

			tok, v, err := coord.Load(ctx, family)
			require.Error(t, err)
			assert.Equal(t, engine.Tokens{}, tok)
			assert.Zero(t, v)
			assert.True(t, strings.HasPrefix(err.Error(), "etcdstore: "), err.Error())
			assert.NotContains(t, err.Error(), "SECRET")
			assert.NotContains(t, err.Error(), "12345678901234567890")
		})
	}
}
