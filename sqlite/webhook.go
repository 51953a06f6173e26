package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.WebhookStore = (*Store)(nil)

// endpointColumns are the columns scanEndpoint reads, in its order.
const endpointColumns = `id, url, secret, secret_key, created_at, disabled_at`

// deliveryColumns are the columns scanDelivery reads, in its order: a
// delivery d joined with its event ev.
const deliveryColumns = `d.id, d.event_id, d.endpoint_id, d.state, d.attempts, d.created_at,
	d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
	d.claim_owner, d.claim_fence, d.claim_expires_at,
	ev.seq, ev.id, ev.type, ev.connection_id, ev.subject, ev.reason, ev.time, ev.generation`

// CreateWebhookEndpoint stores e. See [tokenkeeper.WebhookStore].
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e *tokenkeeper.WebhookEndpoint) error {
	if e == nil {
		return fmt.Errorf("sqlite: create webhook endpoint: %w", errInvalid("the endpoint is nil"))
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("sqlite: create webhook endpoint %s: %w", e.ID, err)
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO webhook_endpoints (`+endpointColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		string(e.ID), e.URL, e.Secret.Ciphertext, e.Secret.KeyID, micros(e.CreatedAt), micros(e.DisabledAt))
	if err != nil {
		err = withMessage(mapErr(err), tokenkeeper.CodeConflict, fmt.Sprintf("webhook endpoint %s exists", e.ID))
		return fmt.Errorf("sqlite: create webhook endpoint %s: %w", e.ID, err)
	}
	return nil
}

// GetWebhookEndpoint returns the endpoint id. See [tokenkeeper.WebhookStore].
func (s *Store) GetWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.WebhookEndpoint, error) {
	e, err := scanEndpoint(s.read.QueryRowContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		err = errNotFound(fmt.Sprintf("webhook endpoint %s", id))
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get webhook endpoint %s: %w", id, mapErr(err))
	}
	return e, nil
}

// ListWebhookEndpoints returns every endpoint, oldest first.
func (s *Store) ListWebhookEndpoints(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error) {
	eps := []*tokenkeeper.WebhookEndpoint{}
	err := func() error {
		rows, err := s.read.QueryContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints ORDER BY created_at, id`)
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
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhook endpoints: %w", mapErr(err))
	}
	return eps, nil
}

// DisableWebhookEndpoint disables the endpoint and fails its pending
// deliveries, in one transaction. See [tokenkeeper.WebhookStore].
func (s *Store) DisableWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID, at time.Time) error {
	err := func() error {
		if micros(at) == 0 {
			return errInvalid("the time of disabling is zero")
		}
		return s.inTx(ctx, func(tx *sql.Tx) error {
			ok, err := affected(tx.ExecContext(ctx, `UPDATE webhook_endpoints
				SET disabled_at = CASE WHEN disabled_at = 0 THEN ? ELSE disabled_at END WHERE id = ?`,
				micros(at), string(id)))
			if err != nil {
				return err
			}
			if !ok {
				return errNotFound(fmt.Sprintf("webhook endpoint %s", id))
			}
			_, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries
				SET state = 'failed', last_error = ?, claim_owner = ''
				WHERE endpoint_id = ? AND state = 'pending'`, errEndpointDeleted, string(id))
			return mapErr(err)
		})
	}()
	if err != nil {
		return fmt.Errorf("sqlite: disable webhook endpoint %s: %w", id, err)
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
		ok, err := affected(s.write.ExecContext(ctx, `UPDATE webhook_endpoints SET secret = ?, secret_key = ?
			WHERE id = ? AND secret = ? AND secret_key = ?`,
			new.Ciphertext, new.KeyID, string(id), old.Ciphertext, old.KeyID))
		if err != nil || ok {
			return err
		}
		if _, err := s.GetWebhookEndpoint(ctx, id); err != nil {
			return err
		}
		return errConflict("the endpoint's secret changed since it was read")
	}()
	if err != nil {
		return fmt.Errorf("sqlite: reseal webhook endpoint %s: %w", id, err)
	}
	return nil
}

// errEndpointDeleted is the LastError of a delivery failed by
// DisableWebhookEndpoint.
const errEndpointDeleted = "the endpoint was deleted"

// ClaimDeliveries claims due deliveries in one BEGIN IMMEDIATE
// transaction, which excludes every other claimer (in this and other
// processes) until it commits. The claim's expiry is on the host's clock.
// See [tokenkeeper.WebhookStore].
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
		return s.inTx(ctx, func(tx *sql.Tx) error {
			clock := s.now()
			rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries
				SET claim_owner = ?, claim_fence = claim_fence + 1, claim_expires_at = ?
				WHERE id IN (SELECT id FROM webhook_deliveries
					WHERE state = 'pending' AND next_attempt_at <= ? AND claim_expires_at <= ?
					ORDER BY next_attempt_at, id LIMIT ?)
				RETURNING id`,
				owner, micros(clock.Add(ttl)), micros(now), micros(clock), min(limit, MaxLimit))
			if err != nil {
				return mapErr(err)
			}
			var ids []any
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return mapErr(err)
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return mapErr(err)
			}
			if len(ids) == 0 {
				return nil
			}
			out, err = queryDeliveries(ctx, tx, `SELECT `+deliveryColumns+`
				FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
				WHERE d.id IN (`+marks(len(ids))+`) ORDER BY d.next_attempt_at, d.id`, ids...)
			return err
		})
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	if out == nil {
		out = []*tokenkeeper.Delivery{}
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
		delivered := time.Time{}
		if r.State == tokenkeeper.DeliveryDelivered {
			delivered = r.At
		}
		ok, err := affected(s.write.ExecContext(ctx, `UPDATE webhook_deliveries
			SET state = ?, attempts = attempts + 1, last_attempt_at = ?, last_status = ?, last_error = ?,
				next_attempt_at = ?, delivered_at = ?, claim_owner = '', claim_expires_at = 0
			WHERE id = ? AND state = 'pending' AND claim_owner <> '' AND claim_owner = ? AND claim_fence = ?`,
			string(r.State), micros(r.At), r.Status, r.Error, micros(r.NextAttemptAt), micros(delivered),
			int64(id), claim.Owner, claim.Fence))
		if err != nil || ok {
			return err
		}
		var n int
		if err := s.write.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE id = ?`, int64(id)).Scan(&n); err != nil {
			return mapErr(err)
		}
		if n == 0 {
			return errNotFound(fmt.Sprintf("delivery %d", id))
		}
		return errConflict("the claim was taken over, or the delivery is no longer pending")
	}()
	if err != nil {
		return fmt.Errorf("sqlite: finish delivery %d: %w", id, err)
	}
	return nil
}

// ListDeliveries returns the deliveries that pass f, newest first.
func (s *Store) ListDeliveries(ctx context.Context, f tokenkeeper.DeliveryFilter) ([]*tokenkeeper.Delivery, error) {
	before := int64(math.MaxInt64)
	if f.Before > 0 {
		before = int64(f.Before)
	}
	where := []string{"d.id < ?"}
	args := []any{before}
	if f.EndpointID != "" {
		where = append(where, "d.endpoint_id = ?")
		args = append(args, string(f.EndpointID))
	}
	if f.EventID != "" {
		where = append(where, "d.event_id = ?")
		args = append(args, string(f.EventID))
	}
	if f.State != "" {
		where = append(where, "d.state = ?")
		args = append(args, string(f.State))
	}
	args = append(args, limitOf(f.Limit))
	out, err := queryDeliveries(ctx, s.read, `SELECT `+deliveryColumns+`
		FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY d.id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	return out, nil
}

// queryDeliveries runs query on db and scans its rows of deliveryColumns.
func queryDeliveries(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*tokenkeeper.Delivery, error) {
	out := []*tokenkeeper.Delivery{}
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d                                      tokenkeeper.Delivery
			created, next, last, delivered, claimX int64
			evAt                                   int64
		)
		ev := &d.Event
		if err := rows.Scan(&d.ID, &d.EventID, &d.EndpointID, &d.State, &d.Attempts, &created,
			&next, &last, &d.LastStatus, &d.LastError, &delivered,
			&d.Claim.Owner, &d.Claim.Fence, &claimX,
			&ev.Seq, &ev.ID, &ev.Type, &ev.ConnectionID, &ev.Subject, &ev.Reason, &evAt, &ev.Generation); err != nil {
			return nil, mapErr(err)
		}
		d.CreatedAt, d.NextAttemptAt, d.LastAttemptAt = fromMicros(created), fromMicros(next), fromMicros(last)
		d.DeliveredAt, d.Claim.ExpiresAt, ev.Time = fromMicros(delivered), fromMicros(claimX), fromMicros(evAt)
		out = append(out, &d)
	}
	return out, mapErr(rows.Err())
}

// scanEndpoint reads one row of endpointColumns.
func scanEndpoint(row scanner) (*tokenkeeper.WebhookEndpoint, error) {
	var e tokenkeeper.WebhookEndpoint
	var created, disabled int64
	if err := row.Scan(&e.ID, &e.URL, &e.Secret.Ciphertext, &e.Secret.KeyID, &created, &disabled); err != nil {
		return nil, err
	}
	e.Secret.Ciphertext = unblob(e.Secret.Ciphertext)
	e.CreatedAt, e.DisabledAt = fromMicros(created), fromMicros(disabled)
	return &e, nil
}
