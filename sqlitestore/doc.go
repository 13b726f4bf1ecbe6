// Package sqlitestore keeps the engine's credentials in a SQLite file, so that they outlive the
// process and so that several processes on one host can share one file of families (tenants,
// users) without one ever overwriting a refresh token another has rotated.
//
// A *Store is an engine.FamilyStore (give it to the engine's families) and, through For, an
// engine.TokenStore for one family (give it to engine.WithTokenStore). A *Coordinator
// (OpenCoordinator) is an engine.Coordinator, for cluster mode (engine.WithCluster): the processes
// of one host then take turns at refreshing each family, and learn each other's new pairs from the
// file. It is a module of its own so that only the programs that use it download SQLite; the
// driver is modernc.org/sqlite, pure Go, so no cgo and no C toolchain are needed.
//
// What a Store guarantees:
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
// What a Store does not do: make processes take turns at refreshing one family. Each engine
// refreshes from the pair in its own memory, so when two processes use the same family through a
// Store, the second to refresh sends a refresh token the first has already rotated away; the store
// then keeps the first one's pair (the second gets ErrConflict), but the server may have refused,
// or with reuse detection revoked, the second refresh. That is what cluster mode is for: give
// every process engine.WithCluster with a Coordinator on the same file (instead of the Store), and
// they take turns. A Store suits a family used by one process at a time: restarts, many families,
// handing a family from one process to another.
//
// What a Coordinator guarantees (engine.Coordinator says how the engine uses it):
//
//   - A lease per family. Lock writes a row of resilient_locks naming its holder (this
//     Coordinator's process id and a random part, and a number per lease) and when the lease ends,
//     in one write, and only if there is no row or its lease has ended. Another holder waits,
//     trying again every 10 to 25 ms, until then or until its context ends. A goroutine renews the
//     lease every third of its time to live (WithLeaseTTL, 10 s by default) while it is held; the
//     unlock removes the row only if it is still its own. A holder that dies (a crash, a SIGKILL)
//     stops renewing, and the family is free one TTL after its last renewal at most. Times are
//     the host's wall clock.
//   - A conditional commit. Every pair has a version; Commit writes only if the row still has the
//     version the caller read (an insert, for version 0, only if there is no row), else it writes
//     nothing and fails with ErrConflict, which wraps engine.ErrConflict. The lease alone could not
//     keep a spent refresh token out of the file (a holder stalled past its lease runs on): the
//     version check does. Each commit is durable before it returns, as a Store's save is.
//   - One host only. Like a Store's, the file must not be on a network file system (NFS, SMB):
//     SQLite's locks and WAL's shared memory are not reliable there. Replicas on several hosts need
//     a coordinator on a server (etcdstore).
//
// A holder that dies after the token endpoint answered but before its commit has spent the refresh
// token without storing the new pair: the file still holds the old one. The next holder, once the
// lease ended, refreshes with it, replaying a refresh token the provider has already rotated. With a
// reuse grace period (some providers allow one, of a few seconds to a minute) the provider accepts
// the replay and answers with a valid pair, and nothing is lost. Without one, the provider refuses it (and
// may revoke the session): the engine then stores an empty pair, which ends the session once, with
// ErrSessionExpired (and a *SessionExpired event) on every replica and no further refresh call,
// until the application signs in again (SetTokens). No replica loops on the refusal.
//
// A Coordinator's tables (resilient_cluster_tokens, resilient_locks) are not a Store's
// (resilient_tokens): both may use one file, and never read each other's rows.
//
// Why SQLite rather than bbolt, the other embedded store Go programs reach for: bbolt takes an
// exclusive lock on its file for as long as it is open, so a second process cannot even open it;
// it fits one process only. SQLite's locks are held for each transaction, not for the life of
// the handle.
//
// Every call honours its context: a Save or Commit waiting for another process's write, and a
// Lock waiting for another holder, return when the context ends. Errors start with "sqlitestore: "
// and wrap their cause with %w; they name the family but never contain a token.
package sqlitestore
