// Package keeper is the refresh authority: it hands callers a valid access
// token for a connection and refreshes it under the rules of providers that
// rotate refresh tokens (Pleo: a refresh token presented twice revokes the
// whole authorisation).
//
// The protocol, in order, for one connection (docs/design.md gives the
// reasoning and every crash point):
//
//  1. Single flight in the process: every caller that needs a new token
//     waits on one shared flight, whose result they all get.
//  2. A lease in the store (owner, fencing generation, expiry renewed while
//     the refresh runs, TTL longer than the refresh timeout) keeps other
//     processes and replicas out. After taking it, the keeper re-reads the
//     record: if someone else refreshed meanwhile, it uses their tokens.
//  3. A marker (Record.Pending) is written durably before the request is
//     sent. A marker found later, with no live lease, means the outcome of
//     a sent refresh is unknown.
//  4. The request runs on a detached context with its own deadline: a
//     caller that gives up stops waiting, but the refresh completes.
//  5. The new pair is committed with a compare-and-swap, under the lease,
//     before any caller sees it. A failed commit is retried with the pair
//     held in memory; the old refresh token is never presented again.
//  6. Errors are classed from the RFC 6749 section 5.2 code:
//     invalid_grant ends the connection (after re-reading the store, since
//     a changed refresh token means a lost race); invalid_client stops all
//     refreshing under the client but keeps connections; transient errors
//     back off with full jitter, honour Retry-After and stop after a bounded
//     number of tries.
//
// Tokens handed out carry ExpiresAt, a promise: the keeper refreshes (and so
// kills) a token only after its ExpiresAt plus a drain grace, unless it is
// forced by an operator or by a 401 proving the token dead
// ([Keeper.Invalidate]). The promise is planned at about 80% of the token's
// lifetime, stored with the token set, and so the same in every process.
// If the provider also refuses the token that a 401's refresh produced,
// further 401s cause no refresh for a cooldown (Config.RejectCooldown): a
// refresh cannot fix a provider that refuses fresh tokens.
//
// Beyond refreshing: [Keeper.Prune] (and Run, with Config.Retention)
// deletes connections that have been disconnected or waiting for a
// reconnect for longer than a retention, each with a compare-and-swap on
// the generation it listed, so a connection reconnected meanwhile is kept;
// [Keeper.Uninstall] revokes a grant at the provider before a Disconnect.
//
// # Metrics
//
// With Config.Registerer set, New registers (no global registry is used):
//
//   - tokenkeeper_refreshes_total{outcome}: token requests issued, by
//     outcome: ok; transient (never sent for a network error, 429, or
//     5xx: retried); invalid_grant (the grant is dead, or a lost race);
//     client_rejected (the client credentials were refused); lost (sent,
//     no usable answer: a timeout or reset after the request was written,
//     a garbled 200; the outcome is unknown); rejected (another 4xx).
//   - tokenkeeper_refresh_duration_seconds: each request's round trip to
//     the token endpoint.
//   - tokenkeeper_lease_wait_seconds: per Token or Invalidate call that
//     waited for a refresh it did not run (another caller's flight in this
//     process, or another owner's lease), the time it waited.
//   - tokenkeeper_scheduler_lag_seconds: how late Run started a planned
//     refresh of a hot connection after its NextRefreshAt (0 if not late).
//   - tokenkeeper_connections{state}: connections in the store per state
//     (every process's), counted on scrape at most every 5s, with a 2s
//     limit; left out of a scrape when the store cannot count.
//   - tokenkeeper_pruned_total: connections deleted by retention.
//   - tokenkeeper_refreshes_suppressed_total: refreshes that a refused
//     token asked for ([Keeper.Invalidate], as after a 401) and that were
//     not made, because the provider refused the token issued in place of
//     an earlier refused one within Config.RejectCooldown. Concurrent
//     reports that share one flight count once.
//   - tokenkeeper_coherence_drops_total: cached tokens dropped because the
//     store's change feed reported that another process changed the
//     connection.
//   - tokenkeeper_change_feed_resyncs_total: times the change feed started
//     listening (each time, every cached token is read again on next use).
//   - tokenkeeper_change_feed_up: 1 while the change feed listens and its
//     probes come back (only with a store that has a feed).
package keeper
