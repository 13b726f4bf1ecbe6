package sqlitestore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilientclient/resilient/engine"
)

// DefaultLeaseTTL is how long a family's lock outlives its holder's last renewal, unless
// WithLeaseTTL says otherwise. A live holder renews every third of it, so it keeps its lease
// through a renewal that waits out a whole busy timeout (DefaultBusyTimeout, 5 s) behind another
// process's write; a holder that dies blocks the family's refreshes on the other processes for at
// most this long. Locks are held only while a refresh runs (a token call, usually well under a
// second), so a long lease costs nothing while every holder lives.
const DefaultLeaseTTL = 10 * time.Second

// MinLeaseTTL is the shortest lease OpenCoordinator accepts. A renewal comes every third of the
// lease, each a durable write (an fsync), and a renewal held up for two thirds of it (by a slow
// fsync, or a wait for another process's write) ends the lease of a holder that is alive and well:
// at half a second, a hitch of a third of a second does it; shorter leases fail on shorter hitches.
const MinLeaseTTL = 500 * time.Millisecond

// WithLeaseTTL sets how long a Coordinator's lock lasts after its holder's last renewal (see
// DefaultLeaseTTL); zero or less means the default. OpenCoordinator refuses a TTL below
// MinLeaseTTL. Open ignores it.
func WithLeaseTTL(d time.Duration) Option {
	return func(c *config) { c.leaseTTL = d }
}

// Tables of the Coordinator: its own, so that a Store and a Coordinator can share one file
// without ever reading each other's rows (their writers follow different rules: a Store's alone,
// a Coordinator's under the lock). commit_id names the commit that wrote the row (see Commit);
// expiry and times are Unix nanoseconds, expiry 0 for none.
const (
	clusterSchema = `CREATE TABLE IF NOT EXISTS resilient_cluster_tokens (
	family            TEXT    NOT NULL PRIMARY KEY,
	access            TEXT    NOT NULL,
	refresh           TEXT    NOT NULL,
	expiry_unix_nano  INTEGER NOT NULL,
	type              TEXT    NOT NULL,
	version           INTEGER NOT NULL,
	commit_id         TEXT    NOT NULL,
	updated_unix_nano INTEGER NOT NULL
) STRICT`
	locksSchema = `CREATE TABLE IF NOT EXISTS resilient_locks (
	family          TEXT    NOT NULL PRIMARY KEY,
	holder          TEXT    NOT NULL,
	until_unix_nano INTEGER NOT NULL
) STRICT`
)

// Coordinator is an engine.Coordinator in a SQLite file, for the processes of one host that share
// credential families in cluster mode (engine.WithCluster): see the package doc for what it
// guarantees. It is safe for concurrent use. Close it when done: Close stops the renewal of the
// locks it still holds, which then end with their lease.
type Coordinator struct {
	db  *sql.DB
	ttl time.Duration
	id  string        // this Coordinator's name in the file: its process id and a random part
	seq atomic.Uint64 // numbers its leases and commits, which it names id/seq

	life      context.Context // ends at Close: stops lock waits and renewals
	endLife   context.CancelFunc
	renewers  sync.WaitGroup // the renewal goroutines of the locks held
	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex        // guards unsure; held by Close while it ends life, and by hold around renewers.Add
	unsure map[string]unsure // per family, commits reported failed that may have been written
}

var _ engine.Coordinator = (*Coordinator)(nil)

// unsure is what a Coordinator remembers of a family's commits that failed in a way that leaves
// open whether they were written: the driver reports a context that ends during SQLite's commit
// as the write's error, though the row was written. The next Commit of the family from the same
// version looks whether the row is one of them.
type unsure struct {
	base    uint64            // the version the caller committed over
	pair    engine.Tokens     // the pair it committed: only the same pair, committed again, may be recognised
	written map[string]uint64 // commit id → the version that commit would have written
}

// OpenCoordinator opens the SQLite file at path for cluster mode, creating it and the
// Coordinator's tables if they do not exist, in WAL mode with synchronous=FULL, like Open. The
// file may be the one a Store uses: their tables differ. Its options are WithLeaseTTL and
// WithBusyTimeout.
func OpenCoordinator(path string, opts ...Option) (*Coordinator, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open coordinator: %w", err)
	}
	if c.leaseTTL < MinLeaseTTL {
		return nil, fmt.Errorf("sqlitestore: open coordinator: lease TTL %v is below the minimum %v", c.leaseTTL, MinLeaseTTL)
	}
	var random [8]byte
	_, _ = rand.Read(random[:]) // never fails (crypto/rand)
	db, err := openDB(path, c, clusterSchema, locksSchema)
	if err != nil {
		return nil, err
	}
	life, end := context.WithCancel(context.Background())
	return &Coordinator{
		db: db, ttl: c.leaseTTL, id: strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(random[:]),
		life: life, endLife: end, unsure: map[string]unsure{},
	}, nil
}

// Close stops the renewal of the locks still held (they end when their lease does, as if this
// process had died) and closes the file. Calls after Close fail; Close itself may be called again.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock() // no renewal starts after this (see hold)
		c.endLife()
		c.mu.Unlock()
		c.renewers.Wait()
		if err := c.db.Close(); err != nil {
			c.closeErr = fmt.Errorf("sqlitestore: close coordinator: %w", err)
		}
	})
	return c.closeErr
}

// name is a new name for a lease or a commit of this Coordinator's, unique in the file.
func (c *Coordinator) name() string {
	return c.id + "/" + strconv.FormatUint(c.seq.Add(1), 10)
}

// Load returns the pair stored under family and its version, or zero Tokens and version 0 when
// there is none.
func (c *Coordinator) Load(ctx context.Context, family string) (engine.Tokens, uint64, error) {
	t, version, err := loadRow(ctx, c.db, "resilient_cluster_tokens", family)
	return t, uint64(version), err
}

// Commit stores t under family if the row is still at version (0: if there is no row), and
// returns the row's new version; otherwise it stores nothing and returns an error wrapping
// ErrConflict (and so engine.ErrConflict). Its Expiry must be within the years 1678 to 2262, as
// for Save.
//
// A Commit that returns another error may still have been written (the driver reports a context
// that ends during SQLite's commit as a failure). The Coordinator remembers it, and the next
// Commit of family over the same version first looks whether the row is that commit's: if so, the
// caller's own write is not a conflict, and the new pair goes over it.
func (c *Coordinator) Commit(ctx context.Context, family string, version uint64, t engine.Tokens) (uint64, error) {
	expiry, err := unixNano(t.Expiry)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: commit family %q: %w", family, err)
	}
	if version >= math.MaxInt64 {
		return 0, fmt.Errorf("sqlitestore: commit family %q: version %d is beyond what the file holds", family, version)
	}
	expect, u, err := c.settle(ctx, family, version, t)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: commit family %q: %w", family, err)
	}
	id, now := c.name(), time.Now().UnixNano()
	var res sql.Result
	if expect == 0 {
		res, err = c.db.ExecContext(ctx,
			`INSERT INTO resilient_cluster_tokens
			 (family, access, refresh, expiry_unix_nano, type, version, commit_id, updated_unix_nano)
			 VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (family) DO NOTHING`,
			family, t.Access, t.Refresh, expiry, t.Type, id, now)
	} else {
		res, err = c.db.ExecContext(ctx,
			`UPDATE resilient_cluster_tokens
			 SET access = ?, refresh = ?, expiry_unix_nano = ?, type = ?, version = version + 1,
			     commit_id = ?, updated_unix_nano = ?
			 WHERE family = ? AND version = ?`,
			t.Access, t.Refresh, expiry, t.Type, id, now, family, int64(expect))
	}
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		u.written[id] = expect + 1
		c.setUnsure(family, u)
		return 0, fmt.Errorf("sqlitestore: commit family %q: %w", family, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("sqlitestore: commit family %q over version %d: %w", family, version, ErrConflict)
	}
	return expect + 1, nil
}

// settle returns the version a Commit over version must expect, and what remains unsure about
// family (the failed commits that the next one may have to recognise, should this one fail too).
// That is version itself unless an earlier commit over version, reported failed, was written and
// is still the row: then the row's version.
//
// Only a Commit of the same pair over the same version is recognised: another caller sharing this
// Coordinator that commits another pair over that (now stale) version gets its conflict.
func (c *Coordinator) settle(ctx context.Context, family string, version uint64, t engine.Tokens) (uint64, unsure, error) {
	c.mu.Lock()
	u, ok := c.unsure[family]
	if ok && u.base == version && samePair(u.pair, t) {
		delete(c.unsure, family)
	} else {
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return version, unsure{base: version, pair: t, written: map[string]uint64{}}, nil
	}
	var (
		rowVersion int64
		commitID   string
	)
	err := c.db.QueryRowContext(ctx,
		`SELECT version, commit_id FROM resilient_cluster_tokens WHERE family = ?`,
		family).Scan(&rowVersion, &commitID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return version, u, nil
	case err != nil:
		c.setUnsure(family, u) // still unsure: the next Commit looks again
		return 0, u, err
	}
	if v, mine := u.written[commitID]; mine && v == uint64(rowVersion) {
		return v, u, nil
	}
	return version, u, nil
}

// samePair reports whether a and b are the same pair.
func samePair(a, b engine.Tokens) bool {
	return a.Access == b.Access && a.Refresh == b.Refresh && a.Type == b.Type && a.Expiry.Equal(b.Expiry)
}

func (c *Coordinator) setUnsure(family string, u unsure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unsure[family] = u
}
