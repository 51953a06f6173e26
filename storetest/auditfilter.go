package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

func listAuditTests() []test {
	return []test{
		{"Empty", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			wantAudit(t, al, tokenkeeper.AuditFilter{})
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: "c1", Before: 10, Limit: 5})
		})},
		{"NewestFirst", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			newest := appendMany(t, al, "c1", 5)
			wantAudit(t, al, tokenkeeper.AuditFilter{}, newest...)
			wantAudit(t, al, tokenkeeper.AuditFilter{Limit: 2}, newest[:2]...)
		})},
		{"ConnectionID", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			var all, c1, c2 []*tokenkeeper.AuditEntry // newest first
			for i, conn := range []tokenkeeper.ConnectionID{"c1", "c2", "", "c1", "c10", "c2", "c1"} {
				e := entry(conn, fmt.Sprint(i))
				appendAudit(t, al, e, all...)
				all = append([]*tokenkeeper.AuditEntry{e}, all...)
				switch conn {
				case "c1":
					c1 = append([]*tokenkeeper.AuditEntry{e}, c1...)
				case "c2":
					c2 = append([]*tokenkeeper.AuditEntry{e}, c2...)
				}
			}
			wantAudit(t, al, tokenkeeper.AuditFilter{}, all...)
			// The id matches exactly: not as a prefix, not c10.
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: "c1"}, c1...)
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: "c2"}, c2...)
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: "c"})
			wantAudit(t, al, tokenkeeper.AuditFilter{ConnectionID: "c1", Limit: 2}, c1[:2]...)
		})},
		{"Before", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			newest := appendMany(t, al, "c1", 10)
			// A walk with Before = the last id of each page visits every
			// entry once, newest first.
			var walked []*tokenkeeper.AuditEntry
			f := tokenkeeper.AuditFilter{Limit: 3}
			for page := 0; ; page++ {
				got := listAudit(t, al, f)
				if len(got) == 0 {
					break
				}
				if page > len(newest) {
					t.Fatal("pagination does not end")
				}
				walked = append(walked, got...)
				f.Before = got[len(got)-1].ID
			}
			wantEqual(t, "entries walked with Before", walked, newest)

			oldest, latest := newest[len(newest)-1], newest[0]
			wantAudit(t, al, tokenkeeper.AuditFilter{Before: latest.ID}, newest[1:]...)
			wantAudit(t, al, tokenkeeper.AuditFilter{Before: latest.ID + 1000}, newest...)
			wantAudit(t, al, tokenkeeper.AuditFilter{Before: oldest.ID})
			wantAudit(t, al, tokenkeeper.AuditFilter{Before: newest[4].ID, Limit: 2}, newest[5:7]...)
			wantAudit(t, al, tokenkeeper.AuditFilter{Before: -1}) // ids are positive
		})},
		{"BeforeConnectionID", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			// Before need not be an id of the connection's own entries.
			var c1 []*tokenkeeper.AuditEntry // newest first
			var others []*tokenkeeper.AuditEntry
			for i := range 9 {
				e := entry("c2", fmt.Sprint(i))
				if i%3 == 0 {
					e.ConnectionID = "c1"
					c1 = append([]*tokenkeeper.AuditEntry{e}, c1...)
				} else {
					others = append(others, e)
				}
				appendAudit(t, al, e)
			}
			// others[3] is the entry between c1's middle (3) and newest (6).
			f := tokenkeeper.AuditFilter{ConnectionID: "c1", Before: others[3].ID}
			wantAudit(t, al, f, c1[1:]...)
			f.Limit = 1
			wantAudit(t, al, f, c1[1])
		})},
		{"Limit", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			appendConcurrently(t, al, "c1", 1001)
			all := listAudit(t, al, tokenkeeper.AuditFilter{Limit: 1000})
			for _, conn := range []tokenkeeper.ConnectionID{"", "c1"} {
				for _, tc := range []struct{ limit, want int }{
					{0, 100}, {-1, 100}, {1, 1}, {100, 100}, {999, 999}, {1000, 1000}, {1001, 1000}, {5000, 1000},
				} {
					f := tokenkeeper.AuditFilter{ConnectionID: conn, Limit: tc.limit}
					got := listAudit(t, al, f)
					if len(got) != tc.want {
						t.Errorf("ListAudit(%+v) returned %d entries, want %d", f, len(got), tc.want)
						continue
					}
					// The newest ones.
					wantEqual(t, fmt.Sprintf("ListAudit(%+v)", f), got, all[:tc.want])
				}
			}
			// The 1001st (the oldest) is reached with Before.
			rest := listAudit(t, al, tokenkeeper.AuditFilter{Before: all[len(all)-1].ID})
			if len(rest) != 1 {
				t.Errorf("ListAudit after the newest 1000 returned %d entries, want 1", len(rest))
			}
		})},
	}
}

// appendConcurrently appends n entries about conn from a few goroutines.
func appendConcurrently(t *testing.T, al tokenkeeper.AuditLog, conn tokenkeeper.ConnectionID, n int) {
	t.Helper()
	const workers = 8
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = al.AppendAudit(t.Context(), entry(conn, fmt.Sprint(i)))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
