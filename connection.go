package tokenkeeper

import (
	"fmt"
	"time"
)

// ConnectionID names a connection: one authorisation (one Pleo company's
// consent to the integration's OAuth client). The integrator chooses it,
// usually as their own tenant or customer key. See [ConnectionID.Validate]
// for the allowed form.
type ConnectionID string

// MaxConnectionIDLength bounds a [ConnectionID], in bytes.
const MaxConnectionIDLength = 128

// Validate reports whether id is usable: 1 to [MaxConnectionIDLength] bytes
// of ASCII letters, digits and ._:@- (safe in a URL path, a log line and a
// file name without escaping), and not "." or "..". It returns a [CodeInvalid] error otherwise.
func (id ConnectionID) Validate() error {
	if id == "" {
		return Errorf(CodeInvalid, "connection id is empty")
	}
	if id == "." || id == ".." {
		return Errorf(CodeInvalid, "connection id %q is a dot-segment, which URL paths remove", string(id))
	}
	if len(id) > MaxConnectionIDLength {
		return Errorf(CodeInvalid, "connection id is %d bytes; the limit is %d", len(id), MaxConnectionIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return Errorf(CodeInvalid, "connection id has %q at byte %d; allowed are letters, digits and ._:@-", rune(c), i)
		}
	}
	return nil
}

// State is the lifecycle state of a connection. The zero State is not valid.
type State string

// The states. Their string values are stored and sent on the wire; they
// never change.
const (
	// StateActive: the connection holds a token set and is refreshed.
	StateActive State = "active"
	// StateReconnectRequired: the grant is dead (invalid_grant). The tokens
	// are wiped, nothing is refreshed, and the user must consent again.
	StateReconnectRequired State = "reconnect_required"
	// StateDisconnected: the integrator ended the connection. The tokens are
	// wiped; a connect flow may start it again.
	StateDisconnected State = "disconnected"
)

// Valid reports whether s is one of the three states.
func (s State) Valid() bool {
	switch s {
	case StateActive, StateReconnectRequired, StateDisconnected:
		return true
	}
	return false
}

// Connection is what tokenkeeper knows about one authorisation, without its
// tokens. The zero value is not a usable connection.
type Connection struct {
	ID ConnectionID
	// Provider names the provider profile ("pleo", "pleo-staging", "custom").
	Provider string
	// Subject is who the grant is for, learned after connecting from
	// GET /v1/introspect's subjectURN (e.g. "urn:pleo:company:<uuid>").
	// Empty until learned.
	Subject string
	// Scopes are the granted scopes.
	Scopes []string
	State  State
	// DegradedSince is when refreshing started to fail transiently; zero
	// while healthy. A degraded connection still serves an unexpired token.
	DegradedSince time.Time
	// Generation is the record's version. It starts at 1 and grows by one
	// with every write of the record (a committed refresh, a reconnect, a
	// metadata change); writes compare and swap on it, so no write is lost.
	Generation    int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
	LastRefreshAt time.Time // zero: never refreshed since connecting
	NextRefreshAt time.Time // the planned refresh; zero when none is planned
	// LastError is a human reason for the last failure ("" if none). It
	// never holds a token.
	LastError string
	// Metadata is the integrator's own, kept across reconnects. nil and an
	// empty map mean the same.
	Metadata map[string]string
}

// Degraded reports whether refreshing is failing transiently.
func (c *Connection) Degraded() bool { return !c.DegradedSince.IsZero() }

// String names the connection for logs; it holds no secrets.
func (c *Connection) String() string {
	return fmt.Sprintf("connection %s (%s, generation %d)", c.ID, c.State, c.Generation)
}
