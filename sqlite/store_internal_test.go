package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "tokenkeeper.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestListQuery_Plan checks that the filtered listings, the keep-alive
// queries above all, search an index instead of scanning the table.
func TestListQuery_Plan(t *testing.T) {
	s := openInternal(t)
	at := time.Now()
	for name, tc := range map[string]struct {
		filter tokenkeeper.ConnectionFilter
		index  string
	}{
		"LastRefreshBefore":      {tokenkeeper.ConnectionFilter{LastRefreshBefore: at}, "connections_last_change_at"},
		"LastRefreshBeforeState": {tokenkeeper.ConnectionFilter{LastRefreshBefore: at, State: tokenkeeper.StateActive}, "connections_last_change_at"},
		"NextRefreshBefore":      {tokenkeeper.ConnectionFilter{NextRefreshBefore: at}, "connections_next_refresh_at"},
		"BothRefreshFilters":     {tokenkeeper.ConnectionFilter{NextRefreshBefore: at, LastRefreshBefore: at}, "connections_next_refresh_at"},
		"State":                  {tokenkeeper.ConnectionFilter{State: tokenkeeper.StateActive}, "connections_state"},
		"IDPrefix":               {tokenkeeper.ConnectionFilter{IDPrefix: "a"}, "sqlite_autoindex_connections_1"},
		"After":                  {tokenkeeper.ConnectionFilter{After: "a"}, "sqlite_autoindex_connections_1"},
	} {
		t.Run(name, func(t *testing.T) {
			query, args := listQuery(tc.filter)
			rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(plan, "; ")
			if !strings.Contains(got, "SEARCH connections USING INDEX "+tc.index+" (") {
				t.Errorf("plan %q does not search %s", got, tc.index)
			}
		})
	}
}

// TestOpen_Pragmas checks the settings of the write connection: a
// committed token set must survive power loss.
func TestOpen_Pragmas(t *testing.T) {
	s := openInternal(t)
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "10000",
	} {
		var got string
		if err := s.write.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	var queryOnly string
	if err := s.read.QueryRowContext(t.Context(), "PRAGMA query_only").Scan(&queryOnly); err != nil || queryOnly != "1" {
		t.Errorf("read pool PRAGMA query_only = %q, %v; want 1", queryOnly, err)
	}
}

// TestMapErr_Busy provokes a real SQLITE_BUSY (another connection holds
// the write lock, and this one does not wait) and checks its code.
func TestMapErr_Busy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	holder, err := s.write.BeginTx(t.Context(), nil) // BEGIN IMMEDIATE
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()

	impatient, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()
	_, err = impatient.ExecContext(t.Context(), `DELETE FROM sessions`)
	if err == nil {
		t.Fatal("a write while another connection holds the lock succeeded")
	}
	if got := tokenkeeper.ErrorCode(mapErr(err)); got != tokenkeeper.CodeUnavailable {
		t.Errorf("mapErr(%v) code = %q, want %q", err, got, tokenkeeper.CodeUnavailable)
	}
}
