package tokenkeeper_test

import (
	"reflect"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestAuditEntry_Fields: each store maps every field of AuditEntry to a
// column, and storetest sets each; an entry never holds a token or a key,
// so no field is a Secret, Sealed or bytes. A new field must reach both
// stores and the suite; this list fails first, to say so.
func TestAuditEntry_Fields(t *testing.T) {
	wantFields(t, reflect.TypeFor[tokenkeeper.AuditEntry](),
		"ID int64", "Time time.Time", "Actor string", "Action string",
		"ConnectionID tokenkeeper.ConnectionID", "Detail string")
}

// TestAuditFilter_Fields: each store turns every field of AuditFilter into
// a condition, and storetest checks each.
func TestAuditFilter_Fields(t *testing.T) {
	wantFields(t, reflect.TypeFor[tokenkeeper.AuditFilter](),
		"ConnectionID tokenkeeper.ConnectionID", "Before int64", "Limit int")
}
