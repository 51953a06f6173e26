package keeper

import (
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Lease times are on the store's clock (the database server's, for a
// networked store), and a replica's clock may be skewed from it by any
// amount. So the keeper never decides anything that matters by comparing a
// lease's ExpiresAt with its own clock: whether a lease is free, or may be
// taken over, is for the store's conditional writes (AcquireLease,
// UpdateLeased) to say. The keeper reads ExpiresAt only as a hint of how
// long to wait, and bounds every such wait by what it knows on its own
// clock: a lease the store has just reported held (or that was just
// renewed) cannot outlast LeaseTTL from now. Skew in either direction so
// costs at most one lease period of waiting, never a wrong decision.

// leaseMargin is added to a wait for a lease to run out, so that the
// AcquireLease that follows does not come a hair too early.
const leaseMargin = 100 * time.Millisecond

// leaseLeft returns the hint, on the local clock, of how long l is held
// from now: l.ExpiresAt - now if that is plausible (in (0, LeaseTTL +
// leaseMargin]), else ok is false. An implausible hint means the clocks
// are skewed, or the lease has expired; only the store can tell which.
func (k *Keeper) leaseLeft(l tokenkeeper.Lease, now time.Time) (left time.Duration, ok bool) {
	if l.Owner == "" {
		return 0, false
	}
	left = l.ExpiresAt.Sub(now)
	return left, left > 0 && left <= k.cfg.LeaseTTL+leaseMargin
}

// leaseDeadline returns the local time by which l, which the store reported
// held (or renewed) at about now, has surely run out unless renewed again:
// the hint if it is plausible, and LeaseTTL from now otherwise.
func (k *Keeper) leaseDeadline(l tokenkeeper.Lease, now time.Time) time.Time {
	left, ok := k.leaseLeft(l, now)
	if !ok {
		left = k.cfg.LeaseTTL
	}
	return now.Add(min(left, k.cfg.LeaseTTL) + leaseMargin)
}
