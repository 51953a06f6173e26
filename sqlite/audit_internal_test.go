package sqlite

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestAuditQuery_Plan checks that both audit listings search, newest first,
// without a sort: the log only grows.
func TestAuditQuery_Plan(t *testing.T) {
	s := openInternal(t)
	for name, tc := range map[string]struct {
		filter tokenkeeper.AuditFilter
		want   string
	}{
		"All":              {tokenkeeper.AuditFilter{}, "SEARCH audit USING INTEGER PRIMARY KEY (rowid<?)"},
		"Before":           {tokenkeeper.AuditFilter{Before: 10}, "SEARCH audit USING INTEGER PRIMARY KEY (rowid<?)"},
		"ConnectionID":     {tokenkeeper.AuditFilter{ConnectionID: "c1"}, "SEARCH audit USING INDEX audit_connection_id (connection_id=? AND id<?)"},
		"ConnectionBefore": {tokenkeeper.AuditFilter{ConnectionID: "c1", Before: 10}, "SEARCH audit USING INDEX audit_connection_id (connection_id=? AND id<?)"},
	} {
		t.Run(name, func(t *testing.T) {
			stmt, args := s.auditQuery(tc.filter)
			query := listAuditSQL
			if stmt == s.stmts.listAuditByConnection {
				query = listAuditByConnectionSQL
			}
			got := queryPlan(t, s, query, args...)
			if got != tc.want {
				t.Errorf("plan %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAppendAudit_NoReuse: an audit id names one entry for good, even if
// the newest entry is deleted (by hand; the store never deletes entries).
// A rowid table without AUTOINCREMENT would hand the deleted id out again.
func TestAppendAudit_NoReuse(t *testing.T) {
	s := openInternal(t)
	var last int64
	for i := range 3 {
		e := &tokenkeeper.AuditEntry{Time: time.Now(), Actor: "cli:test", Action: "test", Detail: strings.Repeat("x", i)}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		last = e.ID
	}
	if _, err := s.write.ExecContext(t.Context(), `DELETE FROM audit WHERE id = ?`, last); err != nil {
		t.Fatal(err)
	}
	e := &tokenkeeper.AuditEntry{Actor: "cli:test", Action: "test"}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= last {
		t.Errorf("the entry after deleting entry %d got id %d; ids must never be reused", last, e.ID)
	}
}

// TestAuditQuery_Before checks the bound auditQuery derives from Before,
// at the edges of int64.
func TestAuditQuery_Before(t *testing.T) {
	s := openInternal(t)
	for before, want := range map[int64]int64{
		0:         1<<63 - 1,
		1:         0,
		2:         1,
		-1:        0,
		-1 << 63:  0,
		1<<63 - 1: 1<<63 - 2,
	} {
		_, args := s.auditQuery(tokenkeeper.AuditFilter{Before: before})
		if got := args[0].(int64); got != want {
			t.Errorf("Before %d: highest id %d, want %d", before, got, want)
		}
	}
}
