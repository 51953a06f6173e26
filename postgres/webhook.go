package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.WebhookStore = (*Store)(nil)

// endpointColumns are the columns scanEndpoint reads, in its order.
const endpointColumns = `id, url, secret, secret_key, created_at, disabled_at`

// deliveryColumns are the columns scanDeliveries reads, in its order: a
// delivery d joined with its event ev.
const deliveryColumns = `d.id, d.event_id, d.endpoint_id, d.state, d.attempts, d.created_at,
	d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
	d.claim_owner, d.claim_fence, d.claim_expires_at,
	ev.seq, ev.id, ev.type, ev.connection_id, ev.subject, ev.reason, ev.time, ev.generation`

// errEndpointDeleted is the LastError of a delivery failed by
// DisableWebhookEndpoint.
const errEndpointDeleted = "the endpoint was deleted"

const (
	createEndpointSQL = `INSERT INTO webhook_endpoints (` + endpointColumns + `) VALUES ($1, $2, $3, $4, $5, $6)`
	getEndpointSQL    = `SELECT ` + endpointColumns + ` FROM webhook_endpoints WHERE id = $1`
	listEndpointsSQL  = `SELECT ` + endpointColumns + ` FROM webhook_endpoints ORDER BY created_at, id`

	// disableEndpointSQL takes the id, the time and the failed
	// deliveries' error; it returns 1 if the endpoint exists.
	disableEndpointSQL = `WITH ep AS (
			UPDATE webhook_endpoints
			SET disabled_at = CASE WHEN disabled_at = '-infinity' THEN $2 ELSE disabled_at END
			WHERE id = $1 RETURNING id),
		failed AS (
			UPDATE webhook_deliveries SET state = 'failed', last_error = $3, claim_owner = ''
			WHERE endpoint_id IN (SELECT id FROM ep) AND state = 'pending')
		SELECT count(*) FROM ep`

	// claimDeliveriesSQL takes the owner, now (the caller's clock, for
	// "due"), the ttl in microseconds and the limit. The claim's times are
	// on the server's clock. SKIP LOCKED: a row another claimer's statement
	// holds is passed over, so claimers never wait for or block each other,
	// and no row is claimed by two; a row whose claim expired is claimable
	// again.
	claimDeliveriesSQL = `WITH due AS (
			SELECT id FROM webhook_deliveries
			WHERE state = 'pending' AND next_attempt_at <= $2 AND claim_expires_at <= clock_timestamp()
			ORDER BY next_attempt_at, id LIMIT $4
			FOR UPDATE SKIP LOCKED),
		claimed AS (
			UPDATE webhook_deliveries d
			SET claim_owner = $1, claim_fence = d.claim_fence + 1,
				claim_expires_at = clock_timestamp() + $3::bigint * interval '1 microsecond'
			FROM due WHERE d.id = due.id
			RETURNING d.*)
		SELECT ` + deliveryColumns + ` FROM claimed d JOIN events ev ON ev.id = d.event_id
		ORDER BY d.next_attempt_at, d.id`

	// finishAttemptSQL takes the state, the attempt's time, status, error,
	// the next attempt's time, the delivered time, then the id and the
	// claim's owner and fence.
	finishAttemptSQL = `UPDATE webhook_deliveries
		SET state = $1, attempts = attempts + 1, last_attempt_at = $2, last_status = $3, last_error = $4,
			next_attempt_at = $5, delivered_at = $6, claim_owner = '', claim_expires_at = '-infinity'
		WHERE id = $7 AND state = 'pending' AND claim_owner <> '' AND claim_owner = $8 AND claim_fence = $9`
)

// CreateWebhookEndpoint stores e. See [tokenkeeper.WebhookStore].
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *tokenkeeper.WebhookEndpoint) error {
	if e == nil {
		return fmt.Errorf("postgres: create webhook endpoint: %w", errInvalid("the endpoint is nil"))
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("postgres: create webhook endpoint %s: %w", e.ID, err)
	}
	err := retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, createEndpointSQL, string(e.ID), e.URL, bytea(e.Secret.Ciphertext), e.Secret.KeyID,
			ts(e.CreatedAt), ts(e.DisabledAt))
		return err
	})
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, fmt.Sprintf("webhook endpoint %s exists", e.ID))
		return fmt.Errorf("postgres: create webhook endpoint %s: %w", e.ID, err)
	}
	return nil
}

// GetWebhookEndpoint returns the endpoint id. See [tokenkeeper.WebhookStore].
func (s *Store) GetWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.WebhookEndpoint, error) {
	var e *tokenkeeper.WebhookEndpoint
	err := errNotFound(fmt.Sprintf("webhook endpoint %s", id))
	if storable(string(id)) {
		err = retry(ctx, func() error {
			var err error
			e, err = scanEndpoint(s.pool.QueryRow(ctx, getEndpointSQL, string(id)))
			return err
		})
		if errors.Is(err, pgx.ErrNoRows) {
			err = errNotFound(fmt.Sprintf("webhook endpoint %s", id))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get webhook endpoint %s: %w", id, mapErr(err))
	}
	return e, nil
}

// ListWebhookEndpoints returns every endpoint, oldest first.
func (s *Store) ListWebhookEndpoints(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error) {
	eps := []*tokenkeeper.WebhookEndpoint{}
	err := retry(ctx, func() error {
		eps = eps[:0]
		rows, err := s.pool.Query(ctx, listEndpointsSQL)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEndpoint(rows)
			if err != nil {
				return err
			}
			eps = append(eps, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook endpoints: %w", mapErr(err))
	}
	return eps, nil
}

// DisableWebhookEndpoint disables the endpoint and fails its pending
// deliveries, in one statement. See [tokenkeeper.WebhookStore].
func (s *Store) DisableWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID, at time.Time) error {
	err := func() error {
		if at.IsZero() {
			return errInvalid("the time of disabling is zero")
		}
		if !storable(string(id)) {
			return errNotFound(fmt.Sprintf("webhook endpoint %s", id))
		}
		var n int64
		err := retry(ctx, func() error {
			return s.pool.QueryRow(ctx, disableEndpointSQL, string(id), ts(at), errEndpointDeleted).Scan(&n)
		})
		if err != nil {
			return mapErr(err)
		}
		if n == 0 {
			return errNotFound(fmt.Sprintf("webhook endpoint %s", id))
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("postgres: disable webhook endpoint %s: %w", id, err)
	}
	return nil
}

// ResealWebhookEndpoint swaps the endpoint's sealed secret in one
// conditional UPDATE. See [tokenkeeper.WebhookStore].
func (s *Store) ResealWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID, old, new tokenkeeper.Sealed) error {
	err := func() error {
		if new.IsZero() {
			return errInvalid("the new sealed secret is empty")
		}
		if err := checkText("the new secret's KeyID", new.KeyID); err != nil {
			return err
		}
		if !storable(string(id)) || !storable(old.KeyID) {
			return errNotFound(fmt.Sprintf("webhook endpoint %s", id))
		}
		var n int64
		err := retry(ctx, func() error {
			tag, err := s.pool.Exec(ctx, `UPDATE webhook_endpoints SET secret = $1, secret_key = $2
				WHERE id = $3 AND secret = $4 AND secret_key = $5`,
				new.Ciphertext, new.KeyID, string(id), bytea(old.Ciphertext), old.KeyID)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return mapErr(err)
		}
		if n > 0 {
			return nil
		}
		if _, err := s.GetWebhookEndpoint(ctx, id); err != nil {
			return err
		}
		return errConflict("the endpoint's secret changed since it was read")
	}()
	if err != nil {
		return fmt.Errorf("postgres: reseal webhook endpoint %s: %w", id, err)
	}
	return nil
}

// ClaimDeliveries claims due deliveries in one statement (FOR UPDATE SKIP
// LOCKED). The claim's expiry is on the server's clock. See
// [tokenkeeper.WebhookStore].
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, now time.Time, ttl time.Duration, limit int) ([]*tokenkeeper.Delivery, error) {
	var out []*tokenkeeper.Delivery
	err := func() error {
		switch {
		case owner == "":
			return errInvalid("the claim owner is empty")
		case ttl <= 0:
			return errInvalid(fmt.Sprintf("the claim ttl %s is not positive", ttl))
		case limit <= 0:
			return errInvalid(fmt.Sprintf("the claim limit %d is not positive", limit))
		}
		if err := checkText("the claim owner", owner); err != nil {
			return err
		}
		var err error
		out, err = s.queryDeliveries(ctx, claimDeliveriesSQL, owner, ts(now), ttl.Microseconds(), min(limit, MaxLimit))
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("postgres: claim deliveries: %w", err)
	}
	return out, nil
}

// FinishAttempt records an attempt's outcome in one conditional UPDATE.
// See [tokenkeeper.WebhookStore].
func (s *Store) FinishAttempt(ctx context.Context, id tokenkeeper.DeliveryID, claim tokenkeeper.DeliveryClaim, r tokenkeeper.DeliveryResult) error {
	err := func() error {
		if !r.State.Valid() {
			return errInvalid(fmt.Sprintf("the delivery state %q is not pending, delivered or failed", r.State))
		}
		if err := checkText("Error", r.Error); err != nil {
			return err
		}
		if !storable(claim.Owner) {
			claim.Owner = ""
		}
		delivered := time.Time{}
		if r.State == tokenkeeper.DeliveryDelivered {
			delivered = r.At
		}
		var n int64
		err := retry(ctx, func() error {
			tag, err := s.pool.Exec(ctx, finishAttemptSQL, string(r.State), ts(r.At), r.Status, r.Error,
				ts(r.NextAttemptAt), ts(delivered), int64(id), claim.Owner, claim.Fence)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return mapErr(err)
		}
		if n > 0 {
			return nil
		}
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)`, int64(id)).Scan(&exists); err != nil {
			return mapErr(err)
		}
		if !exists {
			return errNotFound(fmt.Sprintf("delivery %d", id))
		}
		return errConflict("the claim was taken over, or the delivery is no longer pending")
	}()
	if err != nil {
		return fmt.Errorf("postgres: finish delivery %d: %w", id, err)
	}
	return nil
}

// ListDeliveries returns the deliveries that pass f, newest first.
func (s *Store) ListDeliveries(ctx context.Context, f tokenkeeper.DeliveryFilter) ([]*tokenkeeper.Delivery, error) {
	for _, v := range []string{string(f.EndpointID), string(f.EventID), string(f.State)} {
		if !storable(v) {
			return []*tokenkeeper.Delivery{}, nil
		}
	}
	before := int64(math.MaxInt64)
	if f.Before > 0 {
		before = int64(f.Before)
	}
	args := []any{before}
	where := []string{"d.id < $1"}
	if f.EndpointID != "" {
		args = append(args, string(f.EndpointID))
		where = append(where, fmt.Sprintf("d.endpoint_id = $%d", len(args)))
	}
	if f.EventID != "" {
		args = append(args, string(f.EventID))
		where = append(where, fmt.Sprintf("d.event_id = $%d", len(args)))
	}
	if f.State != "" {
		args = append(args, string(f.State))
		where = append(where, fmt.Sprintf("d.state = $%d", len(args)))
	}
	args = append(args, limitOf(f.Limit))
	out, err := s.queryDeliveries(ctx, `SELECT `+deliveryColumns+`
		FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
		WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY d.id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list deliveries: %w", err)
	}
	return out, nil
}

// queryDeliveries runs query and scans its rows of deliveryColumns.
func (s *Store) queryDeliveries(ctx context.Context, query string, args ...any) ([]*tokenkeeper.Delivery, error) {
	out := []*tokenkeeper.Delivery{}
	err := retry(ctx, func() error {
		out = out[:0]
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d                                      tokenkeeper.Delivery
				created, next, last, delivered, claimX pgtype.Timestamptz
				evAt                                   pgtype.Timestamptz
				attempts, status                       int32
			)
			ev := &d.Event
			if err := rows.Scan(&d.ID, &d.EventID, &d.EndpointID, &d.State, &attempts, &created,
				&next, &last, &status, &d.LastError, &delivered,
				&d.Claim.Owner, &d.Claim.Fence, &claimX,
				&ev.Seq, &ev.ID, &ev.Type, &ev.ConnectionID, &ev.Subject, &ev.Reason, &evAt, &ev.Generation); err != nil {
				return err
			}
			d.Attempts, d.LastStatus = int(attempts), int(status)
			d.CreatedAt, d.NextAttemptAt, d.LastAttemptAt = fromTS(created), fromTS(next), fromTS(last)
			d.DeliveredAt, d.Claim.ExpiresAt, ev.Time = fromTS(delivered), fromTS(claimX), fromTS(evAt)
			out = append(out, &d)
		}
		return rows.Err()
	})
	return out, mapErr(err)
}

// scanEndpoint reads one row of endpointColumns.
func scanEndpoint(row pgx.Row) (*tokenkeeper.WebhookEndpoint, error) {
	var e tokenkeeper.WebhookEndpoint
	var created, disabled pgtype.Timestamptz
	if err := row.Scan(&e.ID, &e.URL, &e.Secret.Ciphertext, &e.Secret.KeyID, &created, &disabled); err != nil {
		return nil, err
	}
	if len(e.Secret.Ciphertext) == 0 {
		e.Secret.Ciphertext = nil
	}
	e.CreatedAt, e.DisabledAt = fromTS(created), fromTS(disabled)
	return &e, nil
}
