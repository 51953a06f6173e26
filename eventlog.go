package tokenkeeper

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
	"time"
)

// EventID names one recorded event for good: "evt_" and 26 lowercase
// base32 characters (128 bits). It is the webhook-id of every delivery of
// the event (Standard Webhooks), so a receiver that has seen it can drop a
// repeated delivery.
type EventID string

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewEventID returns a random EventID.
func NewEventID() EventID {
	var b [16]byte
	rand.Read(b[:])
	return EventID("evt_" + strings.ToLower(idEncoding.EncodeToString(b[:])))
}

// StateEventID returns the EventID of the state change t of connection id
// made by the write of generation: the same inputs give the same id in
// every process. The keeper's own report of a state change and a
// reconciler's repair of the same change (found missing after a crash)
// therefore carry one id, and the [EventLog] keeps whichever is appended
// first (the second is CodeConflict): a state change is recorded, and sent,
// once. Generation 0 (unknown) gives a random id.
func StateEventID(id ConnectionID, generation int64, t EventType) EventID {
	if generation == 0 {
		return NewEventID()
	}
	h := sha256.Sum256([]byte("tokenkeeper/state-event/v1\x00" + string(id) + "\x00" +
		strconv.FormatInt(generation, 10) + "\x00" + string(t)))
	return EventID("evt_" + strings.ToLower(idEncoding.EncodeToString(h[:16])))
}

// StateEventTypes are the event types that change a connection's state:
// the latest of them says what state the connection was last reported in.
// The slice is new on each call.
func StateEventTypes() []EventType {
	return []EventType{EventConnected, EventDegraded, EventRecovered, EventReconnectRequired, EventDisconnected, EventPruned}
}

// WebhookEventTypes are the event types sent to webhook endpoints (as
// "connection.<type>"). The slice is new on each call.
func WebhookEventTypes() []EventType {
	return []EventType{EventConnected, EventDegraded, EventRecovered, EventReconnectRequired, EventDisconnected}
}

// EventWebhookTest is the type of the event that "send test event" makes
// for one webhook endpoint. The keeper never emits it; its wire type is
// "webhook.test" (see [EventType.WireType]).
const EventWebhookTest EventType = "webhook_test"

// WireType is t as sent in a webhook's "type": "connection." + t, but
// "webhook.test" for [EventWebhookTest].
func (t EventType) WireType() string {
	if t == EventWebhookTest {
		return "webhook.test"
	}
	return "connection." + string(t)
}

// StoredEvent is an [Event] as recorded in the [EventLog]. It never holds a
// token.
type StoredEvent struct {
	// Seq is assigned by the store when the event is appended: it grows with
	// every append and is never reused (a cursor for AfterSeq and BeforeSeq).
	Seq int64
	// ID names the event; see [EventID].
	ID EventID
	Event
}

// EventFilter selects events for [EventLog.ListEvents]. The zero value
// selects the oldest events.
type EventFilter struct {
	// ConnectionID, if set, keeps that connection's events.
	ConnectionID ConnectionID
	// Types, if not empty, keeps events of these types.
	Types []EventType
	// Since, if set, keeps events whose Time is at or after it.
	Since time.Time
	// Until, if set, keeps events whose Time is before it.
	Until time.Time
	// AfterSeq keeps events with a Seq above it (pagination, oldest first).
	AfterSeq int64
	// BeforeSeq, if positive, keeps events with a Seq below it (pagination,
	// newest first).
	BeforeSeq int64
	// Newest lists newest (highest Seq) first; otherwise oldest first.
	Newest bool
	// Limit caps the number returned; 0 means 100. Stores cap it at 1000.
	Limit int
}

// Fanout says which webhook endpoints an appended event goes out to. The
// zero Fanout sends it nowhere (the event is only recorded).
type Fanout struct {
	// AllEndpoints enqueues a delivery to every endpoint that is not
	// disabled when the event is appended.
	AllEndpoints bool
	// Endpoint, if set, enqueues a delivery to this endpoint (and only this
	// one, unless AllEndpoints): a test event.
	Endpoint WebhookEndpointID
}

// EventLog is the durable log of connection events and the producer side
// of the webhook outbox. Text fields must be storable (see
// [CheckStoredText]; CodeInvalid otherwise). Safe for concurrent use by
// many goroutines and processes; every method may fail with
// CodeUnavailable or CodeInternal.
type EventLog interface {
	// AppendEvent stores e, sets e.Seq, and in the same transaction
	// enqueues a pending delivery of e, due at e.Time, to each endpoint
	// fanout names: the event and its deliveries are stored together or not
	// at all. e.ID must be set (CodeInvalid otherwise) and new: CodeConflict
	// if an event with that id exists (nothing is stored; see
	// [StateEventID]). CodeNotFound if fanout.Endpoint does not exist or is
	// disabled. e.Time is stored as given (truncated to the microsecond).
	AppendEvent(ctx context.Context, e *StoredEvent, fanout Fanout) error
	// ListEvents returns events that pass f, by Seq (oldest first, or newest
	// first with f.Newest). It returns an empty slice when none match.
	ListEvents(ctx context.Context, f EventFilter) ([]*StoredEvent, error)
	// CountEvents returns how many events pass f, whose Limit, Newest and
	// cursors (AfterSeq, BeforeSeq) it ignores: the dashboard's counts, such
	// as refreshes per minute (Types refreshed, Since and Until a minute
	// apart), served by an index on Time.
	CountEvents(ctx context.Context, f EventFilter) (int, error)
	// LatestEvents returns, for each of ids that has any, its newest event
	// (highest Seq) of one of types (every type if types is empty): the
	// reconciler's batch read of what was last recorded. ids that have none
	// are absent from the map. At most 1000 ids (CodeInvalid otherwise).
	LatestEvents(ctx context.Context, ids []ConnectionID, types []EventType) (map[ConnectionID]*StoredEvent, error)
	// PruneEvents removes, for good, the events whose Time is before before,
	// with their deliveries, and returns how many events it removed. It
	// keeps an event that still has a pending delivery, and each
	// connection's newest event of keepLatest's types while the connection
	// exists (so that what a connection was last reported as outlives the
	// retention; a removed connection's events all go), as well as the
	// newest of those types with no connection id. Stores
	// remove in batches, each its own transaction, so that a large backlog
	// holds no lock for long; on an error, those removed so far stay
	// removed and are counted.
	PruneEvents(ctx context.Context, before time.Time, keepLatest []EventType) (int, error)
}

// Validate returns a [CodeInvalid] error if e cannot be appended: no ID, no
// Type, or a text field [CheckStoredText] refuses.
func (e *StoredEvent) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"ID", string(e.ID)},
		{"Type", string(e.Type)},
		{"ConnectionID", string(e.ConnectionID)},
		{"Subject", e.Subject},
		{"Reason", e.Reason},
	} {
		if err := CheckStoredText(f.name, f.v); err != nil {
			return err
		}
	}
	switch {
	case e.ID == "":
		return &Error{Code: CodeInvalid, Message: "the event has no ID"}
	case e.Type == "":
		return &Error{Code: CodeInvalid, Message: "the event has no Type"}
	}
	return nil
}
