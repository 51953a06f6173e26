package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// auditLog returns s as an AuditLog, or fails t: every Store that runs the
// suite keeps the audit log too.
func auditLog(t *testing.T, s tokenkeeper.Store) tokenkeeper.AuditLog {
	t.Helper()
	al, ok := s.(tokenkeeper.AuditLog)
	if !ok {
		t.Fatalf("%T does not implement tokenkeeper.AuditLog", s)
	}
	return al
}

// withAudit adapts a test of an AuditLog to a test.
func withAudit(run func(t *testing.T, al tokenkeeper.AuditLog)) func(*testing.T, tokenkeeper.Store) {
	return func(t *testing.T, s tokenkeeper.Store) { run(t, auditLog(t, s)) }
}

// entry returns an audit entry about conn with every other field set;
// detail tells entries apart.
func entry(conn tokenkeeper.ConnectionID, detail string) *tokenkeeper.AuditEntry {
	return &tokenkeeper.AuditEntry{
		Time:         now(),
		Actor:        "apikey:akexample",
		Action:       "connection.delete",
		ConnectionID: conn,
		Detail:       detail,
	}
}

// appendAudit appends e or fails t, and checks that its new ID is higher
// than every ID in seen.
func appendAudit(t *testing.T, al tokenkeeper.AuditLog, e *tokenkeeper.AuditEntry, seen ...*tokenkeeper.AuditEntry) {
	t.Helper()
	if err := al.AppendAudit(t.Context(), e); err != nil {
		t.Fatalf("AppendAudit(%s): %v", e.Detail, err)
	}
	for _, old := range seen {
		if e.ID <= old.ID {
			t.Fatalf("AppendAudit(%s) set ID %d, not above the earlier entry %s's %d", e.Detail, e.ID, old.Detail, old.ID)
		}
	}
}

// listAudit returns ListAudit(f) or fails t.
func listAudit(t *testing.T, al tokenkeeper.AuditLog, f tokenkeeper.AuditFilter) []*tokenkeeper.AuditEntry {
	t.Helper()
	entries, err := al.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	for _, e := range entries {
		if e.Time.Location() != time.UTC || e.Time.Nanosecond()%1000 != 0 {
			t.Errorf("entry %d: Time = %v, want UTC and whole microseconds", e.ID, e.Time)
		}
	}
	return entries
}

// wantAudit fails t unless ListAudit(f) returns want, in order.
func wantAudit(t *testing.T, al tokenkeeper.AuditLog, f tokenkeeper.AuditFilter, want ...*tokenkeeper.AuditEntry) {
	t.Helper()
	wantEqual(t, fmt.Sprintf("ListAudit(%+v)", f), listAudit(t, al, f), want)
}

// appendMany appends entries about conn with details "0", "1", ... in
// order and returns them, newest first (as ListAudit does).
func appendMany(t *testing.T, al tokenkeeper.AuditLog, conn tokenkeeper.ConnectionID, n int) []*tokenkeeper.AuditEntry {
	t.Helper()
	var newest []*tokenkeeper.AuditEntry
	for i := range n {
		e := entry(conn, fmt.Sprint(i))
		appendAudit(t, al, e, newest...)
		newest = append([]*tokenkeeper.AuditEntry{e}, newest...)
	}
	return newest
}

func appendAuditTests() []test {
	return []test{
		{"OK", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			e := entry("c1", "revoke=true")
			e.Time = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("UTC+2", 7200))
			sent := *e
			appendAudit(t, al, e)
			if e.ID <= 0 {
				t.Fatalf("AppendAudit set ID %d, want a positive id", e.ID)
			}
			sent.ID = e.ID
			wantEqual(t, "AppendAudit's argument", e, &sent) // only the ID is set
			want := sent
			want.Time = sent.Time.UTC().Truncate(time.Microsecond)
			wantAudit(t, al, tokenkeeper.AuditFilter{}, &want)
		})},
		{"Minimal", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			// No connection, no detail, no time.
			e := &tokenkeeper.AuditEntry{Actor: "cli:root", Action: "keys.rotate"}
			appendAudit(t, al, e)
			wantAudit(t, al, tokenkeeper.AuditFilter{}, e)
		})},
		{"TextRoundTrip", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			odd := "<&>'\"\\ \u2028\u2029 \ufffd \U0001f511 e\u0301 \t\n\x7f"
			e := &tokenkeeper.AuditEntry{Time: now(), Actor: odd, Action: odd, ConnectionID: tokenkeeper.ConnectionID(odd), Detail: odd}
			appendAudit(t, al, e)
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: e.ConnectionID}, e)
		})},
		{"IgnoresGivenID", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			const given = 1 << 40
			e := entry("c1", "first")
			e.ID = given
			appendAudit(t, al, e)
			if e.ID == given {
				t.Errorf("AppendAudit kept the given ID %d; the store assigns ids", given)
			}
			wantAudit(t, al, tokenkeeper.AuditFilter{}, e)
		})},
		{"IDsIncrease", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			newest := appendMany(t, al, "c1", 20) // appendAudit checks each
			wantAudit(t, al, tokenkeeper.AuditFilter{}, newest...)
		})},
		{"Concurrent", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			const workers, each = 8, 25
			var wg sync.WaitGroup
			errs := make([]error, workers)
			var mu sync.Mutex
			byID := map[int64]*tokenkeeper.AuditEntry{}
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						e := entry("c1", fmt.Sprintf("%d/%d", w, i))
						if errs[w] = al.AppendAudit(t.Context(), e); errs[w] != nil {
							return
						}
						mu.Lock()
						if old := byID[e.ID]; old != nil {
							errs[w] = fmt.Errorf("entries %s and %s share id %d", old.Detail, e.Detail, e.ID)
						}
						byID[e.ID] = e
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			got := listAudit(t, al, tokenkeeper.AuditFilter{Limit: workers * each})
			if len(got) != workers*each {
				t.Fatalf("ListAudit returned %d entries, want %d", len(got), workers*each)
			}
			for i, e := range got {
				if i > 0 && e.ID >= got[i-1].ID {
					t.Fatalf("ListAudit: entry %d has ID %d after %d; want strictly decreasing ids", i, e.ID, got[i-1].ID)
				}
				wantEqual(t, fmt.Sprint("entry ", e.ID), e, byID[e.ID])
			}
		})},
		{"ErrInvalid", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			wantCode(t, al.AppendAudit(t.Context(), nil), tokenkeeper.CodeInvalid)
			for what, set := range map[string]func(*tokenkeeper.AuditEntry){
				"no Actor":  func(e *tokenkeeper.AuditEntry) { e.Actor = "" },
				"no Action": func(e *tokenkeeper.AuditEntry) { e.Action = "" },
			} {
				e := entry("c1", what)
				set(e)
				if err := al.AppendAudit(t.Context(), e); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || e.ID != 0 {
					t.Errorf("AppendAudit with %s: %v, ID %d; want code %q and ID 0", what, err, e.ID, tokenkeeper.CodeInvalid)
				}
			}
			wantAudit(t, al, tokenkeeper.AuditFilter{})
		})},
		{"ErrInvalidUTF8", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			for field, set := range map[string]func(*tokenkeeper.AuditEntry){
				"Actor":        func(e *tokenkeeper.AuditEntry) { e.Actor = "cli:\xff" },
				"Action":       func(e *tokenkeeper.AuditEntry) { e.Action = "connection.\xc3" },
				"ConnectionID": func(e *tokenkeeper.AuditEntry) { e.ConnectionID = "c\xfe" },
				"Detail":       func(e *tokenkeeper.AuditEntry) { e.Detail = "name=\xed\xa0\x80" },
			} {
				e := entry("c1", "x")
				set(e)
				wantInvalidText(t, al.AppendAudit(t.Context(), e), field)
			}
			wantAudit(t, al, tokenkeeper.AuditFilter{})
		})},
	}
}
