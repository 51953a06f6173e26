package storetest

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

// session returns a new session, expiring at expires, with every field set.
func session(expires time.Time) *tokenkeeper.Session {
	h := sha256.Sum256([]byte(rand.Text()))
	return &tokenkeeper.Session{
		StateHash:    h[:],
		ConnectionID: "c1",
		ReturnURL:    "https://app.example/connected?x=1&y=%20",
		Verifier:     sealed("key-9"),
		CreatedAt:    now(),
		ExpiresAt:    expires,
	}
}

// createSession stores sess or fails t.
func createSession(t *testing.T, s tokenkeeper.Store, sess *tokenkeeper.Session) {
	t.Helper()
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
}

// wantSession fails t unless got equals want, with times in UTC.
func wantSession(t *testing.T, got, want *tokenkeeper.Session) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("session mismatch (-want +got):\n%s", diff)
	}
	if got.CreatedAt.Location() != time.UTC || got.ExpiresAt.Location() != time.UTC {
		t.Errorf("session times %v, %v are not in UTC", got.CreatedAt, got.ExpiresAt)
	}
}

func createSessionTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			want := session(now().Add(10 * time.Minute))
			createSession(t, s, want)
			got, err := s.TakeSession(t.Context(), want.StateHash)
			if err != nil {
				t.Fatal(err)
			}
			wantSession(t, got, want)
		}},
		{"ErrInvalidUTF8", func(t *testing.T, s tokenkeeper.Store) {
			for field, set := range map[string]func(*tokenkeeper.Session){
				"ConnectionID":   func(sess *tokenkeeper.Session) { sess.ConnectionID = "c\xff" },
				"ReturnURL":      func(sess *tokenkeeper.Session) { sess.ReturnURL = "https://app.example/\xc3" },
				"Verifier.KeyID": func(sess *tokenkeeper.Session) { sess.Verifier.KeyID = "key-\xfe" },
			} {
				sess := session(now().Add(time.Minute))
				set(sess)
				err := s.CreateSession(t.Context(), sess)
				if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(err.Error(), field) {
					t.Errorf("%s not valid UTF-8: error %v, want %q naming %s", field, err, tokenkeeper.CodeInvalid, field)
				}
				_, err = s.TakeSession(t.Context(), sess.StateHash)
				wantCode(t, err, tokenkeeper.CodeNotFound)
			}
		}},
		{"ErrConflict", func(t *testing.T, s tokenkeeper.Store) {
			first := session(now().Add(time.Minute))
			createSession(t, s, first)
			second := session(now().Add(time.Hour))
			second.StateHash = first.StateHash
			wantCode(t, s.CreateSession(t.Context(), second), tokenkeeper.CodeConflict)
			got, err := s.TakeSession(t.Context(), first.StateHash)
			if err != nil {
				t.Fatal(err)
			}
			wantSession(t, got, first)
		}},
	}
}

func takeSessionTests() []test {
	return []test{
		{"Once", func(t *testing.T, s tokenkeeper.Store) {
			sess := session(now().Add(time.Minute))
			createSession(t, s, sess)
			if _, err := s.TakeSession(t.Context(), sess.StateHash); err != nil {
				t.Fatal(err)
			}
			_, err := s.TakeSession(t.Context(), sess.StateHash)
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
		{"ErrNotFound", func(t *testing.T, s tokenkeeper.Store) {
			createSession(t, s, session(now().Add(time.Minute)))
			_, err := s.TakeSession(t.Context(), session(now()).StateHash)
			wantCode(t, err, tokenkeeper.CodeNotFound)
		}},
		{"Expired", func(t *testing.T, s tokenkeeper.Store) {
			// Expiry is the caller's check; the store hands the session over.
			sess := session(now().Add(-time.Hour))
			createSession(t, s, sess)
			got, err := s.TakeSession(t.Context(), sess.StateHash)
			if err != nil {
				t.Fatal(err)
			}
			wantSession(t, got, sess)
		}},
		{"Race", func(t *testing.T, s tokenkeeper.Store) {
			sess := session(now().Add(time.Minute))
			createSession(t, s, sess)
			const n = 20
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					_, errs[i] = s.TakeSession(t.Context(), sess.StateHash)
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch tokenkeeper.ErrorCode(err) {
				case "":
					won++
				case tokenkeeper.CodeNotFound:
				default:
					t.Errorf("taker %d: %v, want success or not found", i, err)
				}
			}
			if won != 1 {
				t.Errorf("%d takers got the session, want exactly 1", won)
			}
		}},
	}
}

func deleteExpiredSessionsTests() []test {
	return []test{
		{"OK", func(t *testing.T, s tokenkeeper.Store) {
			at := now()
			gone := []*tokenkeeper.Session{session(at.Add(-time.Hour)), session(at.Add(-time.Microsecond))}
			kept := []*tokenkeeper.Session{session(at), session(at.Add(time.Hour))}
			for _, sess := range append(append([]*tokenkeeper.Session{}, gone...), kept...) {
				createSession(t, s, sess)
			}
			n, err := s.DeleteExpiredSessions(t.Context(), at)
			if err != nil || n != len(gone) {
				t.Fatalf("DeleteExpiredSessions = %d, %v; want %d, nil", n, err, len(gone))
			}
			if n, err := s.DeleteExpiredSessions(t.Context(), at); err != nil || n != 0 {
				t.Fatalf("DeleteExpiredSessions again = %d, %v; want 0, nil", n, err)
			}
			for _, sess := range gone {
				_, err := s.TakeSession(t.Context(), sess.StateHash)
				wantCode(t, err, tokenkeeper.CodeNotFound)
			}
			for _, sess := range kept {
				if _, err := s.TakeSession(t.Context(), sess.StateHash); err != nil {
					t.Errorf("TakeSession of an unexpired session: %v", err)
				}
			}
		}},
		{"SubMicrosecond", func(t *testing.T, s tokenkeeper.Store) {
			// Stored times are whole microseconds, but now need not be:
			// "before now" is exact, so a session that expired a fraction
			// of a microsecond before now goes (a store must round now up,
			// not truncate it), and one a fraction after now stays.
			at := now()
			for _, frac := range []time.Duration{1, 500, 999} {
				gone, kept := session(at), session(at.Add(time.Microsecond))
				createSession(t, s, gone)
				createSession(t, s, kept)
				n, err := s.DeleteExpiredSessions(t.Context(), at.Add(frac))
				if err != nil || n != 1 {
					t.Fatalf("DeleteExpiredSessions(ExpiresAt + %v) = %d, %v; want 1, nil", frac, n, err)
				}
				_, err = s.TakeSession(t.Context(), gone.StateHash)
				wantCode(t, err, tokenkeeper.CodeNotFound)
				if _, err := s.TakeSession(t.Context(), kept.StateHash); err != nil {
					t.Fatalf("TakeSession of a session expiring after now: %v", err)
				}
			}
		}},
		{"Empty", func(t *testing.T, s tokenkeeper.Store) {
			if n, err := s.DeleteExpiredSessions(t.Context(), now()); err != nil || n != 0 {
				t.Fatalf("DeleteExpiredSessions = %d, %v; want 0, nil", n, err)
			}
		}},
	}
}
