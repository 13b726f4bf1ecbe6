package sqlitestore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// BenchmarkSaveLoad is one family's save of a new pair (a durable write, fsync included) and the
// load of it, as a token actor does on a refresh and on its next activation. Each op is a family
// of its own, so every save is an insert; BenchmarkSaveLoad/update saves over a loaded row.
func BenchmarkSaveLoad(b *testing.B) {
	tok := engine.Tokens{Access: "access", Refresh: "refresh", Expiry: time.Unix(1_900_000_000, 0), Type: "DPoP"}
	run := func(b *testing.B, family func(i int) string) {
		s, err := Open(filepath.Join(b.TempDir(), "tokens.db"))
		require.NoError(b, err)
		defer s.Close()
		ctx := b.Context()
		i := 0
		for b.Loop() {
			f := family(i)
			if err := s.Save(ctx, f, tok); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Load(ctx, f); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("insert", func(b *testing.B) { run(b, func(i int) string { return fmt.Sprint("family-", i) }) })
	b.Run("update", func(b *testing.B) { run(b, func(int) string { return "family" }) })
}
