package tokenkeeper

import (
	"context"
	"time"
)

// AuditEntry records one administrative action: who did what, to which
// connection, and when. Entries are appended and never changed. They never
// hold a token or a key.
type AuditEntry struct {
	// ID is assigned by the store when appended; it grows with every entry.
	ID   int64
	Time time.Time
	// Actor is who acted: "apikey:<id>" for a call to the HTTP API, or
	// "cli:<user>" for the admin command line working on the store.
	Actor string
	// Action names what was done, such as "connection.delete",
	// "connection.refresh", "connect_session.create", "apikey.create",
	// "apikey.revoke", "keys.rotate" or "connection.prune".
	Action string
	// ConnectionID is the connection acted on, if any.
	ConnectionID ConnectionID
	// Detail adds words ("revoke=true", "name=ci"); it may be empty.
	Detail string
}

// AuditFilter selects entries for [AuditLog.ListAudit]. The zero value
// selects the newest entries.
type AuditFilter struct {
	// ConnectionID, if set, keeps entries about that connection.
	ConnectionID ConnectionID
	// Before, if set, keeps entries with an ID below it (pagination, newest
	// first).
	Before int64
	// Limit caps the number returned; 0 means 100. Stores cap it at 1000.
	Limit int
}

// AuditLog keeps the audit trail. Text fields must be valid UTF-8
// (CodeInvalid otherwise). Safe for concurrent use; every method may fail
// with CodeUnavailable or CodeInternal.
type AuditLog interface {
	// AppendAudit stores e and sets e.ID. e.Time is stored as given
	// (truncated to the microsecond). CodeInvalid if Actor or Action is
	// empty.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ListAudit returns entries, newest (highest ID) first.
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEntry, error)
}

// APIKeyStore keeps API keys (hashed; see [APIKey]). Safe for concurrent
// use; every method may fail with CodeUnavailable or CodeInternal.
type APIKeyStore interface {
	// CreateAPIKey stores k. CodeConflict if its id exists; CodeInvalid if
	// it has no hash, no scopes or an invalid name.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// GetAPIKey returns the key record, revoked or not. CodeNotFound if
	// absent.
	GetAPIKey(ctx context.Context, id APIKeyID) (*APIKey, error)
	// ListAPIKeys returns every key record, revoked ones included, oldest
	// first.
	ListAPIKeys(ctx context.Context) ([]*APIKey, error)
	// RevokeAPIKey marks the key revoked at at. Revoking a revoked key keeps
	// the first time and is not an error. CodeNotFound if absent.
	RevokeAPIKey(ctx context.Context, id APIKeyID, at time.Time) error
}
