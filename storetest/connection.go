package storetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func createConnectionTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			rec := record("c1")
			create(t, s, rec)
			// Every field comes back but the Lease, which a write ignores:
			// a new connection's lease is held by nobody.
			wantRecord(t, get(t, s, "c1"), withLease(rec, tokenkeeper.Lease{}))
		}},
		{"Minimal", func(t *testing.T, s tokenkeeper.Store) {
			rec := &tokenkeeper.Record{Connection: tokenkeeper.Connection{
				ID: "c1", State: tokenkeeper.StateDisconnected, Generation: 1,
			}}
			create(t, s, rec)
			wantRecord(t, get(t, s, "c1"), rec)
		}},
		{"EmptyIsNil", func(t *testing.T, s tokenkeeper.Store) {
			rec := record("c1")
			rec.Scopes, rec.Metadata = []string{}, map[string]string{}
			rec.Tokens.AccessToken = tokenkeeper.Sealed{}
			rec.Tokens.RefreshToken = tokenkeeper.Sealed{KeyID: "k", Ciphertext: []byte{}}
			create(t, s, rec)
			got := get(t, s, "c1")
			if got.Scopes != nil || got.Metadata != nil {
				t.Errorf("Scopes, Metadata = %#v, %#v; want nil, nil", got.Scopes, got.Metadata)
			}
			if !got.Tokens.AccessToken.IsZero() || !got.Tokens.RefreshToken.IsZero() {
				t.Errorf("tokens = %+v, want zero Sealed values", got.Tokens)
			}
		}},
		{"TimesUTCTruncated", func(t *testing.T, s tokenkeeper.Store) {
			rec := record("c1")
			zone := time.FixedZone("UTC+5:30", 5*3600+1800)
			rec.CreatedAt = time.Date(2025, 3, 1, 12, 0, 0, 123456789, zone)
			create(t, s, rec)
			got := get(t, s, "c1")
			if want := rec.CreatedAt.UTC().Truncate(time.Microsecond); !got.CreatedAt.Equal(want) {
				t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want)
			}
		}},
		{"ErrConflict", func(t *testing.T, s tokenkeeper.Store) {
			rec := record("c1")
			create(t, s, rec)
			other := record("c1")
			other.Provider = "custom"
			wantCode(t, s.CreateConnection(t.Context(), other), tokenkeeper.CodeConflict)
			wantRecord(t, get(t, s, "c1"), withLease(rec, tokenkeeper.Lease{}))
		}},
		{"ErrInvalidUTF8", func(t *testing.T, s tokenkeeper.Store) {
			for _, tc := range invalidText(true) {
				rec := record("c1")
				tc.set(rec)
				wantInvalidText(t, s.CreateConnection(t.Context(), rec), tc.field)
			}
			f := tokenkeeper.ConnectionFilter{}
			wantIDs(t, f, list(t, s, f)) // nothing was stored
		}},
		{"TextRoundTrip", func(t *testing.T, s tokenkeeper.Store) {
			// Valid UTF-8 that JSON or SQL might escape or fold comes back
			// byte for byte, in every kind of text field.
			odd := "<&>'\"\\ \u2028\u2029 \ufffd \U0001f511 e\u0301 \t\n\x7f"
			rec := record("c1")
			rec.Subject, rec.LastError, rec.Tokens.Scope = odd, odd, odd
			rec.Scopes = []string{odd, "users:read"}
			rec.Metadata = map[string]string{odd: odd, "k": ""}
			create(t, s, rec)
			wantRecord(t, get(t, s, "c1"), withLease(rec, tokenkeeper.Lease{}))
		}},
		{"ErrInvalidGeneration", func(t *testing.T, s tokenkeeper.Store) {
			for _, g := range []int64{0, 2} {
				rec := record("c1")
				rec.Generation = g
				wantCode(t, s.CreateConnection(t.Context(), rec), tokenkeeper.CodeInvalid)
			}
			_, err := s.GetConnection(t.Context(), "c1")
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
	}
}

func getConnectionTests() []test {
	return []test{
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			_, err := s.GetConnection(t.Context(), "c2")
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
	}
}

// changed returns a copy of rec with every field but ID and Lease changed,
// and Generation one higher.
func changed(rec *tokenkeeper.Record) *tokenkeeper.Record {
	t := now()
	c := record(rec.ID)
	c.Provider, c.Subject, c.Scopes = "custom", "urn:x:y", []string{"other"}
	c.State = tokenkeeper.StateReconnectRequired
	c.DegradedSince = time.Time{}
	c.Generation = rec.Generation + 1
	c.CreatedAt, c.UpdatedAt = rec.CreatedAt, t
	c.LastRefreshAt, c.NextRefreshAt = t, time.Time{}
	c.LastError, c.Metadata = "invalid_grant", map[string]string{"tenant": "t-2"}
	c.Tokens = tokenkeeper.SealedTokenSet{AccessToken: sealed("key-3"), Expiry: t.Add(2 * time.Hour)}
	c.Pending = tokenkeeper.Pending{}
	c.Lease = tokenkeeper.Lease{Owner: "writes-ignore-this", Fence: 1234, ExpiresAt: t.Add(time.Hour)}
	return c
}

func updateConnectionTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			lease, _, err := s.AcquireLease(t.Context(), "c1", "holder", long)
			if err != nil {
				t.Fatal(err)
			}
			next := changed(get(t, s, "c1"))
			if err := s.UpdateConnection(t.Context(), next, 1); err != nil {
				t.Fatal(err)
			}
			// Every field is replaced, UpdatedAt as given; the lease is not.
			wantRecord(t, get(t, s, "c1"), withLease(next, lease))
		}},
		{"ErrConflict", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			before := get(t, s, "c1")
			for _, expect := range []int64{0, 2} {
				wantCode(t, s.UpdateConnection(t.Context(), changed(before), expect), tokenkeeper.CodeConflict)
			}
			// A stale write after a committed one fails too.
			if err := s.UpdateConnection(t.Context(), changed(before), 1); err != nil {
				t.Fatal(err)
			}
			after := get(t, s, "c1")
			stale := changed(before)
			stale.LastError = "stale"
			wantCode(t, s.UpdateConnection(t.Context(), stale, 1), tokenkeeper.CodeConflict)
			wantRecord(t, get(t, s, "c1"), after)
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			wantCode(t, s.UpdateConnection(t.Context(), changed(record("c1")), 1), tokenkeeper.CodeNotFound)
		}},
		{"ErrInvalidUTF8", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			before := get(t, s, "c1")
			for _, tc := range invalidText(false) {
				next := changed(before)
				tc.set(next)
				wantInvalidText(t, s.UpdateConnection(t.Context(), next, 1), tc.field)
				wantRecord(t, get(t, s, "c1"), before)
			}
		}},
		{"Race", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			base := get(t, s, "c1")
			const n = 20
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					rec := changed(base)
					rec.LastError = fmt.Sprint("writer ", i)
					<-start
					errs[i] = s.UpdateConnection(t.Context(), rec, 1)
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch tokenkeeper.ErrorCode(err) {
				case "":
					if winner >= 0 {
						t.Fatalf("writers %d and %d both won the compare and swap", winner, i)
					}
					winner = i
				case tokenkeeper.CodeConflict:
				default:
					t.Fatalf("writer %d: %v, want success or conflict", i, err)
				}
			}
			if winner < 0 {
				t.Fatal("no writer won the compare and swap")
			}
			if got, want := get(t, s, "c1").LastError, fmt.Sprint("writer ", winner); got != want {
				t.Errorf("LastError = %q, want the winner's %q", got, want)
			}
		}},
	}
}

// invalidText returns, for each text field of a Record that writes store,
// a change that makes it invalid UTF-8. Stores refuse such text with
// CodeInvalid naming the field: they must return what they were given, and
// PostgreSQL's text cannot hold it (nor can JSON: encoding/json replaces it
// with U+FFFD). withID includes the ID, for CreateConnection.
func invalidText(withID bool) []textCase {
	const bad = "ok\xffno" // 0xff is never valid in UTF-8
	cases := []textCase{
		{"Provider", func(r *tokenkeeper.Record) { r.Provider = bad }},
		{"Subject", func(r *tokenkeeper.Record) { r.Subject = "urn:\xff" }},
		{"Scopes", func(r *tokenkeeper.Record) { r.Scopes = []string{"users:read", "bad\xc3"} }}, // a truncated sequence
		{"State", func(r *tokenkeeper.Record) { r.State = tokenkeeper.State(bad) }},
		{"LastError", func(r *tokenkeeper.Record) { r.LastError = "refused: \xed\xa0\x80" }}, // a UTF-16 surrogate
		{"Metadata", func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"ok": "x", "blob": "\xff\xfe"} }},
		{"Metadata", func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"ok": "x", "k\xff": "v"} }},
		{"Tokens.AccessToken.KeyID", func(r *tokenkeeper.Record) { r.Tokens.AccessToken.KeyID = bad }},
		{"Tokens.RefreshToken.KeyID", func(r *tokenkeeper.Record) { r.Tokens.RefreshToken.KeyID = bad }},
		{"Tokens.Scope", func(r *tokenkeeper.Record) { r.Tokens.Scope = bad }},
		{"Pending.Owner", func(r *tokenkeeper.Record) { r.Pending.Owner = bad }},
	}
	if withID {
		cases = append(cases, textCase{"ID", func(r *tokenkeeper.Record) { r.ID = "c\xff" }})
	}
	return cases
}

// textCase sets field of a record to text that is not valid UTF-8.
type textCase struct {
	field string
	set   func(*tokenkeeper.Record)
}

// wantInvalidText fails t unless err is CodeInvalid and names field.
func wantInvalidText(t *testing.T, err error, field string) {
	t.Helper()
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(err.Error(), field) {
		t.Fatalf("%s not valid UTF-8: error %v (code %q), want %q naming %s",
			field, err, tokenkeeper.ErrorCode(err), tokenkeeper.CodeInvalid, field)
	}
}
