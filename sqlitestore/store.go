package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/resilientclient/resilient/engine"
)

// DefaultBusyTimeout is how long a write waits for another connection's (or process's) write to
// end before failing, unless WithBusyTimeout says otherwise.
const DefaultBusyTimeout = 5 * time.Second

// openTimeout bounds Open's own statements (the schema, the checks), which take no context.
const openTimeout = 30 * time.Second

// schema is the one table: a row per family, with the version that Save compares and swaps.
// Expiry is in Unix nanoseconds, 0 for none; updated_unix_nano is for people reading the file.
const schema = `CREATE TABLE IF NOT EXISTS resilient_tokens (
	family            TEXT    NOT NULL PRIMARY KEY,
	access            TEXT    NOT NULL,
	refresh           TEXT    NOT NULL,
	expiry_unix_nano  INTEGER NOT NULL,
	type              TEXT    NOT NULL,
	version           INTEGER NOT NULL,
	updated_unix_nano INTEGER NOT NULL
) STRICT`

// Store is a FamilyStore in a SQLite file (see the package doc for what it guarantees). It is
// safe for concurrent use. It keeps in memory a version number for each family it has loaded or
// saved. Close it when done.
type Store struct {
	db *sql.DB

	mu       sync.Mutex             // guards families
	families map[string]familyState // what this Store knows of each family's row
}

var _ engine.FamilyStore = (*Store)(nil)

// Option changes a setting of Open or OpenCoordinator.
type Option func(*config)

type config struct {
	busyTimeout time.Duration
	leaseTTL    time.Duration // OpenCoordinator's only
}

// WithBusyTimeout sets how long a write waits for another connection's or process's write to end
// before it fails (SQLite's busy_timeout). Zero or less means DefaultBusyTimeout (5 s). A call's
// context can end the wait sooner.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) { c.busyTimeout = d }
}

// Open opens the SQLite file at path, creating it and its table if they do not exist, in WAL mode
// with synchronous=FULL. Several processes may open the same file at once.
func Open(path string, opts ...Option) (*Store, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open: %w", err)
	}
	db, err := openDB(path, c, schema)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, families: map[string]familyState{}}, nil
}

// newConfig applies opts and fills in the defaults. A nil Option is an error, not a panic.
func newConfig(opts []Option) (config, error) {
	c := config{}
	for i, o := range opts {
		if o == nil {
			return c, fmt.Errorf("option %d is nil", i+1)
		}
		o(&c)
	}
	if c.busyTimeout <= 0 {
		c.busyTimeout = DefaultBusyTimeout
	}
	if c.leaseTTL <= 0 {
		c.leaseTTL = DefaultLeaseTTL
	}
	return c, nil
}

// openDB opens the file at path with c's busy timeout and creates the tables given if they are
// missing.
func openDB(path string, c config, tables ...string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlitestore: open: empty path (an in-memory database would be a different one on each connection)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs, c.busyTimeout))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	// One connection: SQLite writes one at a time anyway, and within the process database/sql's
	// queue (which honours each call's context) orders them instead of SQLite's busy handler,
	// which polls with sleeps. Other processes still meet the busy handler.
	db.SetMaxOpenConns(1)
	if err := setUp(db, tables...); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return db, nil
}

// dsn is the driver's name for the file at the absolute path abs: a SQLite URI, so that a path
// with '?', '#' or '%' in it still names the file, with the pragmas that every connection of the
// pool runs when it opens (busy_timeout and synchronous hold per connection). The driver runs
// busy_timeout first, so the others wait for a lock rather than fail.
func dsn(abs string, busy time.Duration) string {
	escape := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	q := url.Values{"_pragma": {
		fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()),
		"journal_mode(WAL)",
		"synchronous(FULL)",
	}}
	return "file:" + escape.Replace(filepath.ToSlash(abs)) + "?" + q.Encode()
}

// setUp creates the tables that are missing (one statement each) and checks that the pragmas
// took: journal_mode=WAL silently stays what it was on a file system without shared memory, and
// Open and OpenCoordinator promise WAL.
func setUp(db *sql.DB, tables ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	for _, table := range tables {
		if _, err := db.ExecContext(ctx, table); err != nil {
			return fmt.Errorf("creating the tables: %w", err)
		}
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal", mode)
	}
	return nil
}

// Close closes the file and ends the goroutines of database/sql. Calls after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}
