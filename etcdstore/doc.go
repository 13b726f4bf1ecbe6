// Package etcdstore is an engine.Coordinator kept in etcd: the replicas of a service, on any
// number of hosts, that share credential families take turns refreshing each family, and none
// ever stores a pair over one another replica stored after it read. Give one *Coordinator per
// process to its engines (engine.WithCluster). It is a module of its own so that only the
// programs that use it download the etcd client.
//
// What it guarantees:
//
//   - The lock is a lease. Lock takes a family's lock with etcd's concurrency.Mutex, on a lease
//     (a concurrency.Session) this Coordinator keeps alive while its process runs and reaches
//     etcd. Unlock releases it; if the process dies, or loses etcd for longer than the lease's
//     time to live, etcd deletes the lock with the lease and the next waiter gets it. Replicas
//     waiting for a family get it in the order they asked (etcd's Mutex queues them by revision).
//   - Commit compares revisions. Load returns the pair and its key's ModRevision, a revision of
//     the whole etcd cluster that grows with every write; Commit is one transaction that puts the
//     new pair only if the key's ModRevision is still the one given (0: the key does not exist),
//     and fails with an error wrapping engine.ErrConflict otherwise. This, not the lock, is what
//     keeps a spent refresh token from replacing a newer pair: a lease can end while its holder
//     still runs (a long pause, a partition), and the next holder may then refresh too.
//   - Loads are linearizable (etcd's default): a Load after a Commit returned, on any replica,
//     sees that Commit or a later one.
//
// The time to live (WithTTL, 10 s by default) is a trade-off. A holder that dies blocks the
// others' refreshes of its families for up to the TTL; a holder cut off from etcd for longer
// than the TTL loses its locks while it may still be refreshing. The default equals the engine's
// default refresh timeout, so a replica waits for a dead holder about as long as one refresh may
// take, and the session renews the lease every TTL/3 (about 3 s), so one or two lost renewals do
// not end it. etcd's own default, 60 s, would stall a dead replica's families for a minute. The
// server may raise a short TTL to its minimum, 1.5 election timeouts (2 s with etcd's defaults).
//
// One Coordinator holds one session: every lock it holds is on the same lease, and a Lock made
// after that lease ended (its keepalive stopped because etcd was lost) starts a new one. Locks of
// one family taken through the same Coordinator wait for each other in the process as well
// (etcd's Mutex alone would let two holders of one session in at once).
//
// What to secure: etcd holds every family's refresh token in clear, under the key prefix
// (WithPrefix, "/resilient/" by default): tokens/<family> for the pairs, locks/<family>/ for the
// locks, the family escaped as a URL path segment. Connect with TLS (clientv3.Config.TLS), turn
// on etcd's authentication, and give the replicas' etcd user a role whose permissions cover the
// prefix and nothing else; no other user needs to read it. Backups and snapshots of etcd hold
// the tokens too.
//
// All methods are safe for concurrent use and honour their context: with etcd unreachable they
// return an error when the context ends. Errors start with "etcdstore: " and wrap their cause
// with %w; they may name the family but never contain a token.
package etcdstore
