// Package sqlitestore keeps the engine's credentials in a SQLite file, so that they outlive the
// process and so that several processes on one host can share one file of families (tenants,
// users) without one ever overwriting a refresh token another has rotated.
//
// A *Store is an engine.FamilyStore (give it to the engine's families) and, through For, an
// engine.TokenStore for one family (give it to engine.WithTokenStore). It is a module of its own
// so that only the programs that use it download SQLite; the driver is modernc.org/sqlite, pure
// Go, so no cgo and no C toolchain are needed.
//
// What it guarantees:
//
//   - Durable before used. The file is in WAL mode with synchronous=FULL: when Save returns nil
//     the pair is on disk, through a power cut as well as a crash (as far as the disk keeps what
//     fsync says it wrote). The engine uses a rotated pair
//     only after its Save returned, and the refresh token it replaced is spent at the server, so a
//     Save that a power cut could undo (synchronous=NORMAL in WAL mode) could leave the file with
//     a refresh token that no longer works. Saves come once per refresh per family, so the cost
//     of one fsync each does not matter.
//   - Compare-and-swap. Every row has a version. The Store remembers, per family, the version it
//     last loaded or saved, and Save replaces the row only if it still has that version;
//     otherwise it changes nothing and returns an error wrapping ErrConflict. Another process
//     that rotated the family's refresh token in between has the newer pair: writing an older
//     one over it would put a spent refresh token back in the file, and the next refresh would
//     fail (or, with a server that detects reuse, revoke the whole session). After ErrConflict,
//     Load the family to get the pair that won; until then its Saves keep failing.
//   - A family this Store never loaded counts as version 0, no row expected: its first Save
//     inserts the row, and fails with ErrConflict if the row already exists (another process
//     inserted it, even a moment before).
//   - Shared by processes on one host. SQLite's locks make each Save atomic across processes, and
//     a writer waits up to the busy timeout (WithBusyTimeout, 5 s by default) for another's write
//     to end. It is not for a network file system (NFS, SMB): SQLite's locks and WAL's shared
//     memory are not reliable there. Processes on several hosts need a database server.
//
// What it does not do: make processes take turns at refreshing one family. Each engine refreshes
// from the pair in its own memory, so when two processes use the same family, the second to
// refresh sends a refresh token the first has already rotated away; the store then keeps the
// first one's pair (the second gets ErrConflict), but the server may have refused, or with reuse
// detection revoked, the second refresh. Give each family that has a rotating refresh token one
// process at a time, and share the file for the rest: many families, restarts, handing a family
// from one process to another.
//
// Why SQLite rather than bbolt, the other embedded store Go programs reach for: bbolt takes an
// exclusive lock on its file for as long as it is open, so a second process cannot even open it;
// it fits one process only. SQLite's locks are held for each transaction, not for the life of
// the handle.
//
// Every call honours its context: a Save waiting for another process's lock returns when the
// context ends. Errors start with "sqlitestore: " and wrap their cause with %w; they name the
// family but never contain a token.
package sqlitestore
