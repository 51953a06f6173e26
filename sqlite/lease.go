package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// AcquireLease gives owner the lease on connection id until ttl from now
// (by the host's clock), if the lease is free, expired, or already owner's,
// and returns it with the record as it is after the acquisition, read in
// the same transaction. Every acquisition, a re-acquisition by the holder
// included, increments the connection's Fence; the Fence never goes back,
// not even on release.
//
// If another owner holds an unexpired lease, it returns the zero Lease, the
// record (whose Lease shows the holder and until when) and CodeUnavailable.
// It returns CodeNotFound if there is no such connection, and CodeInvalid
// for an empty owner, one that is not valid UTF-8 or holds a NUL byte, or
// a ttl that is not positive.
func (s *Store) AcquireLease(ctx context.Context, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) (tokenkeeper.Lease, *tokenkeeper.Record, error) {
	lease, rec, err := s.acquireLease(ctx, id, owner, ttl)
	if err != nil {
		return tokenkeeper.Lease{}, rec, fmt.Errorf("sqlite: acquire lease %s: %w", id, err)
	}
	return lease, rec, nil
}

func (s *Store) acquireLease(ctx context.Context, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) (tokenkeeper.Lease, *tokenkeeper.Record, error) {
	if owner == "" {
		return tokenkeeper.Lease{}, nil, errInvalid("the lease owner is empty")
	}
	if err := checkText("the lease owner", owner); err != nil {
		return tokenkeeper.Lease{}, nil, err
	}
	if ttl <= 0 {
		return tokenkeeper.Lease{}, nil, errInvalid(fmt.Sprintf("the lease ttl %s is not positive", ttl))
	}
	var rec *tokenkeeper.Record
	var acquired bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		row := tx.StmtContext(ctx, s.stmts.acquireLease).QueryRowContext(ctx,
			owner, micros(now.Add(ttl)), string(id), owner, micros(now))
		var err error
		rec, err = scanRecord(row)
		if err == nil {
			acquired = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr(err)
		}
		// Absent, or held by another owner: the re-read says which.
		rec, err = getConnection(ctx, tx.StmtContext(ctx, s.stmts.getConnectionW), id)
		return err
	})
	switch {
	case err != nil:
		return tokenkeeper.Lease{}, nil, err
	case !acquired:
		return tokenkeeper.Lease{}, rec, &tokenkeeper.Error{
			Code:    tokenkeeper.CodeUnavailable,
			Message: fmt.Sprintf("the lease is held by %s until %s", rec.Lease.Owner, rec.Lease.ExpiresAt.Format(time.RFC3339Nano)),
		}
	}
	return rec.Lease, rec, nil
}

// RenewLease extends lease to ttl from now (by the host's clock), keeping
// its Owner and Fence, and returns the renewed lease. It returns
// CodeConflict if lease is not the connection's current lease (another
// Owner or Fence) or has expired, CodeNotFound if there is no such
// connection, and CodeInvalid for a ttl that is not positive.
func (s *Store) RenewLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease, ttl time.Duration) (tokenkeeper.Lease, error) {
	if ttl <= 0 {
		return tokenkeeper.Lease{}, fmt.Errorf("sqlite: renew lease %s: %w", id,
			errInvalid(fmt.Sprintf("the lease ttl %s is not positive", ttl)))
	}
	var renewed tokenkeeper.Lease
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		var expires int64
		err := tx.StmtContext(ctx, s.stmts.renewLease).QueryRowContext(ctx,
			micros(now.Add(ttl)), string(id), lease.Owner, lease.Fence, micros(now),
		).Scan(&renewed.Owner, &renewed.Fence, &expires)
		renewed.ExpiresAt = fromMicros(expires)
		if !errors.Is(err, sql.ErrNoRows) {
			return mapErr(err)
		}
		if _, err := getConnection(ctx, tx.StmtContext(ctx, s.stmts.getConnectionW), id); err != nil {
			return err
		}
		return errConflict(fmt.Sprintf("the lease (fence %d) is no longer held", lease.Fence))
	})
	if err != nil {
		return tokenkeeper.Lease{}, fmt.Errorf("sqlite: renew lease %s: %w", id, err)
	}
	return renewed, nil
}

// ReleaseLease frees lease if it is the connection's current, unexpired
// lease, keeping the Fence counter. Releasing a lease that is no longer
// held (expired, taken over, or of a deleted connection) changes nothing
// and returns nil.
//
// Like the other lease operations, it reads the lease clock inside its
// write transaction, once it holds the write lock, so that a lease that
// expires while the call waits for the lock is not released.
func (s *Store) ReleaseLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmts.releaseLease).ExecContext(ctx,
			string(id), lease.Owner, lease.Fence, micros(s.now()))
		return mapErr(err)
	})
	if err != nil {
		return fmt.Errorf("sqlite: release lease %s: %w", id, err)
	}
	return nil
}
