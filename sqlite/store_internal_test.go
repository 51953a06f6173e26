package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
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
		"UpdatedBeforeState":     {tokenkeeper.ConnectionFilter{UpdatedBefore: at, State: tokenkeeper.StateDisconnected}, "connections_state_updated_at"},
		"UpdatedBeforeStateAfter": {tokenkeeper.ConnectionFilter{UpdatedBefore: at, State: tokenkeeper.StateDisconnected, After: "a"},
			"connections_state_updated_at"},
	} {
		t.Run(name, func(t *testing.T) {
			query, args := listQuery(tc.filter)
			got := queryPlan(t, s, query, args...)
			if !strings.Contains(got, "SEARCH connections USING INDEX "+tc.index+" (") {
				t.Errorf("plan %q does not search %s", got, tc.index)
			}
		})
	}
}

// queryPlan returns the steps of EXPLAIN QUERY PLAN for query, joined
// with "; ".
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
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
	return strings.Join(plan, "; ")
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

// TestStmts_Reuse checks that the prepared statements stay usable after a
// call that failed on them (a constraint, no row, a lost compare and swap,
// an ended context), on the read pool from many goroutines at once, and
// that Close closes them, twice without error.
func TestStmts_Reuse(t *testing.T) {
	s := openInternal(t)
	ctx := t.Context()
	at := time.Now().UTC().Truncate(time.Microsecond)
	rec := func(id tokenkeeper.ConnectionID) *tokenkeeper.Record {
		return &tokenkeeper.Record{Connection: tokenkeeper.Connection{
			ID: id, Provider: "pleo", State: tokenkeeper.StateActive, Generation: 1, CreatedAt: at, UpdatedAt: at,
		}}
	}
	for range 3 {
		if err := s.CreateConnection(ctx, rec("c1")); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict && err != nil {
			t.Fatalf("CreateConnection c1: %v", err)
		}
	}
	if err := s.CreateConnection(ctx, rec("c2")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.TakeSession(ctx, []byte{9}); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Fatalf("TakeSession of none: %v, want not found", err)
		}
		if _, err := s.GetConnection(ctx, "none"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Fatalf("GetConnection of none: %v, want not found", err)
		}
	}
	if err := s.CreateSession(ctx, &tokenkeeper.Session{StateHash: []byte{9}, ConnectionID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeSession(ctx, []byte{9}); err != nil {
		t.Fatal(err)
	}

	lease, _, err := s.AcquireLease(ctx, "c1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AcquireLease(ctx, "c1", "b", time.Minute); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
		t.Fatalf("AcquireLease of a held lease: %v, want unavailable", err)
	}
	stale := lease
	stale.Fence--
	r := rec("c1")
	r.Generation = 2
	if err := s.UpdateLeased(ctx, r, 1, stale); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
		t.Fatalf("UpdateLeased with a stale fence: %v, want conflict", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.UpdateLeased(done, r, 1, lease); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
		t.Fatalf("UpdateLeased on an ended context: %v, want unavailable", err)
	}
	if _, err := s.GetConnection(done, "c1"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
		t.Fatalf("GetConnection on an ended context: %v, want unavailable", err)
	}
	if err := s.UpdateLeased(ctx, r, 1, lease); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewLease(ctx, "c1", stale, time.Minute); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
		t.Fatalf("RenewLease of a stale lease: %v, want conflict", err)
	}
	if _, err := s.RenewLease(ctx, "c1", lease, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLease(ctx, "c1", lease); err != nil {
		t.Fatal(err)
	}

	// Reads on the read pool's connections, beside writes.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := s.GetConnection(ctx, "c1")
				if err != nil || got.Generation != 2 {
					errs <- fmt.Errorf("reader %d: generation %v, %v", i, got, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			l, _, err := s.AcquireLease(ctx, "c2", "w", time.Minute)
			if err == nil {
				err = s.ReleaseLease(ctx, "c2", l)
			}
			if err != nil {
				errs <- fmt.Errorf("writer: %v", err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if err := s.DeleteConnection(ctx, "c2", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteConnection(ctx, "c2", 0); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		t.Fatalf("DeleteConnection of none: %v, want not found", err)
	}
	if n, err := s.DeleteExpiredSessions(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("DeleteExpiredSessions = %d, %v", n, err)
	}
	// The statements added with API keys and the audit log, after their
	// failures too.
	if err := s.DeleteConnection(ctx, "c1", 1); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict {
		t.Fatalf("DeleteConnection of a moved generation: %v, want conflict", err)
	}
	_, key, err := tokenkeeper.NewAPIKey("k", []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, at)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.CreateAPIKey(ctx, key); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict && err != nil {
			t.Fatalf("CreateAPIKey: %v", err)
		}
		if err := s.RevokeAPIKey(ctx, "none", at); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Fatalf("RevokeAPIKey of none: %v, want not found", err)
		}
		if _, err := s.GetAPIKey(ctx, "none"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Fatalf("GetAPIKey of none: %v, want not found", err)
		}
		if err := s.AppendAudit(ctx, &tokenkeeper.AuditEntry{Actor: "a", Action: "b", ConnectionID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeAPIKey(ctx, key.ID, at); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.ListAPIKeys(ctx); err != nil || len(keys) != 1 || !keys[0].Revoked() {
		t.Fatalf("ListAPIKeys = %v, %v; want the one revoked key", keys, err)
	}
	for _, f := range []tokenkeeper.AuditFilter{{}, {ConnectionID: "c1"}} {
		if es, err := s.ListAudit(ctx, f); err != nil || len(es) != 3 {
			t.Fatalf("ListAudit(%+v) = %d entries, %v; want 3", f, len(es), err)
		}
	}
	if counts, err := s.CountConnections(ctx); err != nil || counts[tokenkeeper.StateActive] != 1 {
		t.Fatalf("CountConnections = %v, %v; want 1 active", counts, err)
	}
	if err := s.DeleteConnection(ctx, "c1", 2); err != nil {
		t.Fatal(err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.GetConnection(ctx, "c1"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInternal {
		t.Errorf("GetConnection after Close: %v, want internal", err)
	}
	if err := s.ReleaseLease(ctx, "c1", lease); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInternal {
		t.Errorf("ReleaseLease after Close: %v, want internal", err)
	}
}
