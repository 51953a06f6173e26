package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

// acquireTries bounds the rounds of AcquireLease: a round whose UPDATE
// changed nothing, but whose re-read finds the lease free (it was released
// or ran out between the two statements), tries again.
const acquireTries = 3

// AcquireLease gives owner the lease on connection id until ttl (rounded
// up to the microsecond) from now by the database server's clock, if the
// lease is free, expired, or already owner's, and returns it with the
// record as the acquiring UPDATE ... RETURNING left it. Every acquisition,
// a re-acquisition by the holder included, increments the connection's
// Fence; the Fence never goes back, not even on release.
//
// If another owner holds an unexpired lease, it returns the zero Lease, the
// record (read by a second statement, whose Lease shows the holder and
// until when) and CodeUnavailable. It returns CodeNotFound if there is no
// such connection, and CodeInvalid for an empty owner, one that is not
// valid UTF-8 or holds a NUL byte, or a ttl that is not positive.
func (s *Store) AcquireLease(ctx context.Context, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) (tokenkeeper.Lease, *tokenkeeper.Record, error) {
	lease, rec, err := s.acquireLease(ctx, id, owner, ttl)
	if err != nil {
		return tokenkeeper.Lease{}, rec, fmt.Errorf("postgres: acquire lease %s: %w", id, err)
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
	if !storable(string(id)) {
		return tokenkeeper.Lease{}, nil, errNotFound("connection " + string(id))
	}
	var rec *tokenkeeper.Record
	for range acquireTries {
		err := retry(ctx, func() error {
			var err error
			rec, err = scanRecord(s.pool.QueryRow(ctx, acquireLeaseSQL, string(id), owner, micros(ttl)))
			return err
		})
		if err == nil {
			return rec.Lease, rec, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return tokenkeeper.Lease{}, nil, mapErr(err)
		}
		// Absent, or held by another owner: the re-read says which.
		var now pgtype.Timestamptz
		err = retry(ctx, func() error {
			var err error
			rec, err = scanRecord(s.pool.QueryRow(ctx, getConnectionNowSQL, string(id)), &now)
			return err
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return tokenkeeper.Lease{}, nil, errNotFound("connection " + string(id))
		}
		if err != nil {
			return tokenkeeper.Lease{}, nil, mapErr(err)
		}
		if l := rec.Lease; l.Owner != "" && l.Owner != owner && fromTS(now).Before(l.ExpiresAt) {
			break
		}
	}
	return tokenkeeper.Lease{}, rec, &tokenkeeper.Error{
		Code:    tokenkeeper.CodeUnavailable,
		Message: fmt.Sprintf("the lease is held by %s until %s", rec.Lease.Owner, rec.Lease.ExpiresAt.Format(time.RFC3339Nano)),
	}
}

// micros returns d in whole microseconds, rounded up, for the ttl argument
// of the lease statements.
func micros(d time.Duration) int64 {
	m := int64(d / time.Microsecond)
	if d%time.Microsecond != 0 {
		m++
	}
	return m
}

// RenewLease extends lease to ttl (rounded up to the microsecond) from now
// by the database server's clock, keeping its Owner and Fence, and returns
// the renewed lease. It returns CodeConflict if lease is not the
// connection's current lease (another Owner or Fence) or has expired,
// CodeNotFound if there is no such connection, and CodeInvalid for a ttl
// that is not positive.
func (s *Store) RenewLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease, ttl time.Duration) (tokenkeeper.Lease, error) {
	renewed, err := s.renewLease(ctx, id, lease, ttl)
	if err != nil {
		return tokenkeeper.Lease{}, fmt.Errorf("postgres: renew lease %s: %w", id, err)
	}
	return renewed, nil
}

func (s *Store) renewLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease, ttl time.Duration) (tokenkeeper.Lease, error) {
	if ttl <= 0 {
		return tokenkeeper.Lease{}, errInvalid(fmt.Sprintf("the lease ttl %s is not positive", ttl))
	}
	if !storable(string(id)) {
		return tokenkeeper.Lease{}, errNotFound("connection " + string(id))
	}
	var renewed tokenkeeper.Lease
	err := pgx.ErrNoRows // an owner that is not storable text holds no lease
	if storable(lease.Owner) {
		err = retry(ctx, func() error {
			var expires pgtype.Timestamptz
			err := s.pool.QueryRow(ctx, renewLeaseSQL, string(id), lease.Owner, lease.Fence, micros(ttl)).
				Scan(&renewed.Owner, &renewed.Fence, &expires)
			renewed.ExpiresAt = fromTS(expires)
			return err
		})
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return renewed, mapErr(err)
	}
	if _, err := s.explain(ctx, id); err != nil {
		return tokenkeeper.Lease{}, err
	}
	return tokenkeeper.Lease{}, errConflict(fmt.Sprintf("the lease (fence %d) is no longer held", lease.Fence))
}

// ReleaseLease frees lease if it is the connection's current, unexpired
// lease (by the database server's clock, read in the one conditional
// UPDATE), keeping the Fence counter. Releasing a lease that is no longer
// held (expired, taken over, or of a deleted connection) changes nothing
// and returns nil.
func (s *Store) ReleaseLease(ctx context.Context, id tokenkeeper.ConnectionID, lease tokenkeeper.Lease) error {
	if !storable(string(id)) || !storable(lease.Owner) {
		return nil // neither can be stored, so no such lease is held
	}
	if _, err := s.exec(ctx, releaseLeaseSQL, string(id), lease.Owner, lease.Fence); err != nil {
		return fmt.Errorf("postgres: release lease %s: %w", id, err)
	}
	return nil
}
