package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// NUL bytes (U+0000) are valid UTF-8, and SQLite's text holds them, but
// PostgreSQL's text cannot. Every store refuses them alike, in every text
// field a write stores, with CodeInvalid naming the field, so that what one
// store accepts the other does too. Sealed values and hashes are bytes, not
// text: they keep their NUL bytes (sealed and apiKey put some in).

// nulText returns, for each text field of a Record that writes store, a
// change that puts a NUL byte in it. withID includes the ID, for
// CreateConnection.
func nulText(withID bool) []textCase {
	cases := []textCase{
		{"Provider", func(r *tokenkeeper.Record) { r.Provider = "pleo\x00" }},
		{"Subject", func(r *tokenkeeper.Record) { r.Subject = "urn:\x00pleo" }},
		{"Scopes", func(r *tokenkeeper.Record) { r.Scopes = []string{"users:read", "\x00"} }},
		{"State", func(r *tokenkeeper.Record) { r.State = "active\x00" }},
		{"LastError", func(r *tokenkeeper.Record) { r.LastError = "refused: \x00" }},
		{"Metadata", func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"ok": "x", "nul": "a\x00b"} }},
		{"Metadata", func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"ok": "x", "k\x00": "v"} }},
		{"Tokens.AccessToken.KeyID", func(r *tokenkeeper.Record) { r.Tokens.AccessToken.KeyID = "key\x00" }},
		{"Tokens.RefreshToken.KeyID", func(r *tokenkeeper.Record) { r.Tokens.RefreshToken.KeyID = "\x00key" }},
		{"Tokens.Scope", func(r *tokenkeeper.Record) { r.Tokens.Scope = "users:read\x00" }},
		{"Pending.Owner", func(r *tokenkeeper.Record) { r.Pending.Owner = "replica\x00-7" }},
	}
	if withID {
		cases = append(cases, textCase{"ID", func(r *tokenkeeper.Record) { r.ID = "c\x00" }})
	}
	return cases
}

func nulTests() []test {
	return []test{
		{"CreateConnection", func(t *testing.T, s tokenkeeper.Store) {
			for _, tc := range nulText(true) {
				rec := record("c1")
				tc.set(rec)
				wantInvalidText(t, s.CreateConnection(t.Context(), rec), tc.field)
			}
			f := tokenkeeper.ConnectionFilter{}
			wantIDs(t, f, list(t, s, f)) // nothing was stored
		}},
		{"UpdateConnection", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			before := get(t, s, "c1")
			for _, tc := range nulText(false) {
				next := changed(before)
				tc.set(next)
				wantInvalidText(t, s.UpdateConnection(t.Context(), next, 1), tc.field)
				wantRecord(t, get(t, s, "c1"), before)
			}
		}},
		{"UpdateLeased", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			l := acquire(t, s, "c1", "a", long)
			before := get(t, s, "c1")
			for _, tc := range nulText(false) {
				next := changed(before)
				tc.set(next)
				wantInvalidText(t, s.UpdateLeased(t.Context(), next, 1, l), tc.field)
				wantRecord(t, get(t, s, "c1"), before)
			}
		}},
		{"AcquireLease", func(t *testing.T, s tokenkeeper.Store) {
			create(t, s, record("c1"))
			_, _, err := s.AcquireLease(t.Context(), "c1", "replica\x00", long)
			wantCode(t, err, tokenkeeper.CodeInvalid)
			wantLease(t, s, "c1", tokenkeeper.Lease{})
		}},
		{"CreateSession", func(t *testing.T, s tokenkeeper.Store) {
			for field, set := range map[string]func(*tokenkeeper.Session){
				"ConnectionID":   func(sess *tokenkeeper.Session) { sess.ConnectionID = "c\x00" },
				"ReturnURL":      func(sess *tokenkeeper.Session) { sess.ReturnURL = "https://app.example/\x00" },
				"Verifier.KeyID": func(sess *tokenkeeper.Session) { sess.Verifier.KeyID = "key-\x00" },
			} {
				sess := session(now().Add(time.Minute))
				set(sess)
				err := s.CreateSession(t.Context(), sess)
				if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(err.Error(), field) {
					t.Errorf("%s with a NUL byte: error %v, want %q naming %s", field, err, tokenkeeper.CodeInvalid, field)
				}
				_, err = s.TakeSession(t.Context(), sess.StateHash)
				wantCode(t, err, tokenkeeper.CodeNotFound)
			}
		}},
		{"CreateAPIKey", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			for field, set := range map[string]func(*tokenkeeper.APIKey){
				"ID":     func(k *tokenkeeper.APIKey) { k.ID = "ak\x00" },
				"Name":   func(k *tokenkeeper.APIKey) { k.Name = "ci\x00" },
				"Scopes": func(k *tokenkeeper.APIKey) { k.Scopes = []tokenkeeper.Scope{"tokens", "proxy\x00"} },
			} {
				k := apiKey(t, "ci", now())
				set(k)
				wantInvalidText(t, ks.CreateAPIKey(t.Context(), k), field)
			}
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{})
		})},
		{"AppendAudit", withAudit(func(t *testing.T, al tokenkeeper.AuditLog) {
			for field, set := range map[string]func(*tokenkeeper.AuditEntry){
				"Actor":        func(e *tokenkeeper.AuditEntry) { e.Actor = "cli:\x00" },
				"Action":       func(e *tokenkeeper.AuditEntry) { e.Action = "connection.\x00" },
				"ConnectionID": func(e *tokenkeeper.AuditEntry) { e.ConnectionID = "c\x00" },
				"Detail":       func(e *tokenkeeper.AuditEntry) { e.Detail = "name=\x00" },
			} {
				e := entry("c1", "x")
				set(e)
				wantInvalidText(t, al.AppendAudit(t.Context(), e), field)
				if e.ID != 0 {
					t.Errorf("AppendAudit with a NUL byte in %s set ID %d", field, e.ID)
				}
			}
			wantAudit(t, al, tokenkeeper.AuditFilter{})
		})},
		{"Lookups", func(t *testing.T, s tokenkeeper.Store) {
			// A key with a NUL byte cannot have been stored: looking it up
			// finds nothing, as any other absent key, rather than failing.
			create(t, s, record("c"))
			_, err := s.GetConnection(t.Context(), "c\x00")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			wantCode(t, s.DeleteConnection(t.Context(), "c\x00", 0), tokenkeeper.CodeNotFound)
			_, _, err = s.AcquireLease(t.Context(), "c\x00", "a", long)
			wantCode(t, err, tokenkeeper.CodeNotFound)
			if err := s.ReleaseLease(t.Context(), "c", tokenkeeper.Lease{Owner: "a\x00", Fence: 1}); err != nil {
				t.Errorf("ReleaseLease of an owner with a NUL byte: %v", err)
			}
			_, err = keyStore(t, s).GetAPIKey(t.Context(), "ak\x00")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			get(t, s, "c")
		}},
	}
}
