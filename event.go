package tokenkeeper

import (
	"context"
	"time"
)

// EventType names what happened to a connection. The string values are
// stored and sent on the wire (as "connection.<type>" webhooks); they never
// change.
type EventType string

// The event types.
const (
	// EventConnected: a connect flow finished and the connection holds tokens
	// (first connect or reconnect).
	EventConnected EventType = "connected"
	// EventRefreshed: a refresh committed a new token set.
	EventRefreshed EventType = "refreshed"
	// EventDegraded: refreshing failed transiently; the connection still
	// serves its unexpired token and will retry.
	EventDegraded EventType = "degraded"
	// EventRecovered: a refresh succeeded after the connection was degraded.
	EventRecovered EventType = "recovered"
	// EventReconnectRequired: the grant is dead; the user must consent again.
	EventReconnectRequired EventType = "reconnect_required"
	// EventDisconnected: the integrator ended the connection.
	EventDisconnected EventType = "disconnected"
	// EventPruned: retention removed what was left of a connection that had
	// been disconnected, or waiting for a reconnect, for too long. The
	// connection no longer exists.
	EventPruned EventType = "pruned"
	// EventClientRejected: the provider rejected the integration's own
	// client credentials (invalid_client or unauthorized_client). Refreshing
	// under that client stops until the credentials are fixed; connections
	// are kept. This is an operator alert.
	EventClientRejected EventType = "client_rejected"
)

// Event is one thing that happened to a connection. It never carries a
// token.
type Event struct {
	Type         EventType
	ConnectionID ConnectionID
	// Subject is the connection's subject, if known.
	Subject string
	// Reason says why, in words ("" for routine events such as refreshed).
	Reason string
	Time   time.Time
	// Generation is the connection record's Generation as written by the
	// change the event reports (for client_rejected, which writes nothing,
	// as read; for pruned, the removed record's); 0 when unknown. With
	// ConnectionID and Type it names a state change once: see
	// [StateEventID].
	Generation int64
}

// EventHandler receives events in-process. Handle is called synchronously
// from the goroutine that caused the event, after the change is persisted,
// so it must return quickly (queue slow work) and be safe for concurrent
// use. It must not call back into the keeper for the same connection.
type EventHandler interface {
	Handle(ctx context.Context, e Event)
}

// EventHandlerFunc adapts a function to [EventHandler].
type EventHandlerFunc func(ctx context.Context, e Event)

// Handle calls f(ctx, e).
func (f EventHandlerFunc) Handle(ctx context.Context, e Event) { f(ctx, e) }
