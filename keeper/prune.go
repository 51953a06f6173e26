package keeper

import (
	"context"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Prune removes, for good, the connections that have been disconnected or
// waiting for a reconnect (reconnect_required) for longer than retention:
// those whose record was last written (UpdatedAt) before now minus
// retention, on the Config.Now clock. Active connections are never
// removed, however old.
//
// It pages through the store (reconnect_required first, then
// disconnected), and deletes each record only if it is still the version
// it listed (a compare-and-swap on the generation): a connection
// reconnected, or otherwise written, since it was listed is kept, and so
// is one another process pruned first. Each removal is logged at info and
// emits [tokenkeeper.EventPruned]; this process forgets the connection.
// With dryRun, nothing is deleted, logged as removed or emitted.
//
// It returns the connections removed (or, with dryRun, that would be), as
// they were listed. On a store error it stops and returns those removed
// so far with the error. Prune is safe to call concurrently, in any
// number of processes sharing the store.
//
// Errors: [tokenkeeper.CodeInvalid] if retention <= 0; the store's
// (CodeUnavailable, CodeInternal) or ctx's otherwise.
func (k *Keeper) Prune(ctx context.Context, retention time.Duration, dryRun bool) ([]*tokenkeeper.Connection, error) {
	if retention <= 0 {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "prune: retention must be positive, not %s", retention)
	}
	now := k.now()
	cutoff := now.Add(-retention)
	var out []*tokenkeeper.Connection
	for _, state := range []tokenkeeper.State{tokenkeeper.StateReconnectRequired, tokenkeeper.StateDisconnected} {
		var after tokenkeeper.ConnectionID
		for {
			page, err := k.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{
				State: state, UpdatedBefore: cutoff, After: after, Limit: k.prunePage,
			})
			if err != nil {
				return out, fmt.Errorf("prune: list %s connections: %w", state, err)
			}
			for _, rec := range page {
				after = rec.ID
				// The store filtered already; the policy is checked here too,
				// so that no store can make retention remove a live connection.
				if rec.State != state || !rec.UpdatedAt.Before(cutoff) {
					continue
				}
				removed, err := k.pruneOne(ctx, rec, now, retention, dryRun)
				if err != nil {
					return out, err
				}
				if removed {
					c := rec.Connection
					out = append(out, &c)
				}
			}
			if len(page) < k.prunePage {
				break
			}
		}
	}
	return out, nil
}

// pruneOne deletes rec if it is still the stored version, and reports
// whether it did (or, with dryRun, would).
func (k *Keeper) pruneOne(ctx context.Context, rec *tokenkeeper.Record, now time.Time, retention time.Duration, dryRun bool) (bool, error) {
	age := now.Sub(rec.UpdatedAt)
	if dryRun {
		k.log.Info("prune: would remove connection (dry run)", "connection", rec.ID, "state", rec.State, "subject", rec.Subject, "age", age)
		return true, nil
	}
	err := k.cfg.Store.DeleteConnection(ctx, rec.ID, rec.Generation)
	switch tokenkeeper.ErrorCode(err) {
	case "":
	case tokenkeeper.CodeConflict:
		k.log.Info("prune: connection changed since it was listed; kept", "connection", rec.ID)
		return false, nil
	case tokenkeeper.CodeNotFound:
		return false, nil // removed meanwhile (another process pruned it)
	default:
		return false, fmt.Errorf("prune: delete connection %s: %w", rec.ID, err)
	}
	if v, ok := k.entries.Load(rec.ID); ok {
		k.entries.CompareAndDelete(rec.ID, v)
	}
	k.metrics.prunedOne()
	reason := pruneReason(rec.State, age, retention)
	k.log.Info("prune: removed connection", "connection", rec.ID, "state", rec.State, "subject", rec.Subject, "age", age, "reason", reason)
	k.emit(ctx, tokenkeeper.EventPruned, rec, reason)
	return true, nil
}

// pruneReason says why a connection was pruned, as in "disconnected for 31
// days (retention 30 days)".
func pruneReason(state tokenkeeper.State, age, retention time.Duration) string {
	what := "disconnected"
	if state == tokenkeeper.StateReconnectRequired {
		what = "waiting for a reconnect"
	}
	return fmt.Sprintf("%s for %s (retention %s)", what, humanDuration(age), humanDuration(retention))
}

// humanDuration writes d in whole days from two days up, else as a Go
// duration to the second.
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= 2*day:
		return fmt.Sprintf("%d days", d/day)
	case d >= day && d%day == 0:
		return "1 day"
	}
	return d.Round(time.Second).String()
}

// pruneLoop prunes every PruneInterval until ctx ends, the first time
// shortly after Run starts.
func (k *Keeper) pruneLoop(ctx context.Context) {
	t := time.NewTimer(min(k.cfg.PruneInterval, 10*k.cfg.ScheduleInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		removed, err := k.Prune(ctx, k.cfg.Retention, false)
		switch {
		case err != nil && ctx.Err() == nil:
			k.log.Warn("prune: stopped early; the rest waits for the next prune", "removed", len(removed), "error", err)
		case len(removed) > 0:
			k.log.Info("prune: done", "removed", len(removed), "retention", k.cfg.Retention)
		}
		t.Reset(k.cfg.PruneInterval)
	}
}
