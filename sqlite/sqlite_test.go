package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
	"github.com/tokenkeeper/tokenkeeper/storetest"
)

// open opens a store on a new file in a temporary directory.
func open(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tokenkeeper.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenkeeper.Store { return open(t) })
}

// TestOpen_FileModes checks that the database and its -wal and -shm files
// are readable by their owner only: they hold sealed tokens.
func TestOpen_FileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A write makes sure the -wal and -shm files exist.
	if err := s.CreateConnection(t.Context(), newRecord("c1")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want -rw-------", filepath.Base(name), perm)
		}
	}
}

// TestOpen_SymlinkDotDot: Open must create the 0600 file at the path as
// the kernel resolves it and hand SQLite that same file. With a path that
// climbs out of a symlinked directory ("link/../tokenkeeper.db"), the
// kernel's file is next to the link's target, while a lexical clean
// (filepath.Clean, filepath.Abs) names one next to the link: had SQLite got
// that one, it would create the real database (and its -wal and -shm) with
// the default mode, readable by everyone under the usual umask 022.
func TestOpen_SymlinkDotDot(t *testing.T) {
	old := syscall.Umask(0o022) // the usual umask, whatever the runner's
	defer syscall.Umask(old)
	setUp := func(t *testing.T) (dir string) {
		dir = t.TempDir()
		deeper := filepath.Join(dir, "sub", "deeper")
		if err := os.MkdirAll(deeper, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(deeper, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	check := func(t *testing.T, dir, path string) {
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.CreateConnection(t.Context(), newRecord("c1")); err != nil {
			t.Fatal(err)
		}
		// The kernel's dir/sub/tokenkeeper.db holds the database.
		db := filepath.Join(dir, "sub", "tokenkeeper.db")
		for _, name := range []string{db, db + "-wal", db + "-shm"} {
			fi, err := os.Stat(name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s (%d bytes) has mode %v, want -rw-------", name, fi.Size(), perm)
			}
		}
		if fi, err := os.Stat(db + "-wal"); err == nil && fi.Size() == 0 {
			t.Errorf("%s-wal is empty: the write went elsewhere", db)
		}
		// Nothing next to the link.
		for _, name := range []string{"tokenkeeper.db", "tokenkeeper.db-wal", "tokenkeeper.db-shm"} {
			if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists (%v): the database was opened next to the link", name, err)
			}
		}
		// Through another spelling of the same file, the record is there.
		s2, err := sqlite.Open(t.Context(), db)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, err := s2.GetConnection(t.Context(), "c1"); err != nil {
			t.Errorf("GetConnection through %s: %v", db, err)
		}
	}
	t.Run("Absolute", func(t *testing.T) {
		dir := setUp(t)
		check(t, dir, filepath.Join(dir, "link")+"/../tokenkeeper.db")
	})
	t.Run("Relative", func(t *testing.T) {
		dir := setUp(t)
		t.Chdir(filepath.Join(dir, "link")) // getwd may say .../link: the walk must not trust it
		check(t, dir, "../tokenkeeper.db")
	})
	t.Run("FileLink", func(t *testing.T) {
		// The last element a link: the file created and checked is its
		// target, which SQLite opens too (and puts -wal and -shm beside).
		dir := setUp(t)
		if err := os.Symlink(filepath.Join(dir, "sub", "tokenkeeper.db"), filepath.Join(dir, "sub", "deeper", "alias.db")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "tokenkeeper.db"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, dir, filepath.Join(dir, "link", "alias.db"))
	})
}

// TestOpen_SharedMode: like seal.Load with a keyset, Open refuses an
// existing database (or -wal or -shm) file that group or others may
// access, and says to run chmod 600.
func TestOpen_SharedMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
			// SQLite removes -wal and -shm on the last close; a crash leaves
			// them.
			if err := os.WriteFile(name, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o601} {
			if err := os.Chmod(name, mode); err != nil {
				t.Fatal(err)
			}
			s, err := sqlite.Open(t.Context(), path)
			if err == nil {
				s.Close()
				t.Fatalf("Open with %s of mode %04o succeeded", filepath.Base(name), mode)
			}
			wantCode(t, "Open", err, tokenkeeper.CodeInvalid)
			if msg := err.Error(); !strings.Contains(msg, "chmod 600 "+name) {
				t.Errorf("Open with %s of mode %04o: %q does not say to run chmod 600 on it", filepath.Base(name), mode, msg)
			}
		}
		if err := os.Chmod(name, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open after chmod 600: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStore_InvalidUTF8: Metadata and Scopes go through encoding/json, which
// would replace invalid UTF-8 with U+FFFD, so the store could not "return it
// unchanged" (store.go's Record doc); PostgreSQL's text refuses it outright.
// Every text field is refused alike, with CodeInvalid naming the field
// (storetest pins the other fields and methods).
func TestStore_InvalidUTF8(t *testing.T) {
	s := open(t)
	for field, set := range map[string]func(*tokenkeeper.Record){
		`Metadata["blob"]`:     func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"blob": "\xff\xfe", "ok": "x"} },
		`Metadata key "k\xff"`: func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"k\xff": "x"} },
		"Scopes[1]":            func(r *tokenkeeper.Record) { r.Scopes = []string{"users:read", "bad\xc3"} },
		"Subject":              func(r *tokenkeeper.Record) { r.Subject = "urn:\xff" },
	} {
		rec := newRecord("c1")
		set(rec)
		err := s.CreateConnection(t.Context(), rec)
		wantCode(t, field, err, tokenkeeper.CodeInvalid)
		if err != nil && !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %q does not name the field", field, err)
		}
	}
	if _, err := s.GetConnection(t.Context(), "c1"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		t.Errorf("GetConnection after refused creations: %v, want not found", err)
	}
}

// TestStore_NUL: SQLite's text could keep a NUL byte, but PostgreSQL's
// cannot, so this store refuses one too (CodeInvalid naming the field) and
// both stores accept the same text; sealed bytes keep theirs.
// (storetest pins every field for every backend.)
func TestStore_NUL(t *testing.T) {
	s := open(t)
	for field, set := range map[string]func(*tokenkeeper.Record){
		`Metadata["k"]`:        func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"k": "a\x00b"} },
		`Metadata key "k\x00"`: func(r *tokenkeeper.Record) { r.Metadata = map[string]string{"k\x00": "x"} },
		"Scopes[0]":            func(r *tokenkeeper.Record) { r.Scopes = []string{"\x00"} },
		"LastError":            func(r *tokenkeeper.Record) { r.LastError = "x\x00" },
	} {
		rec := newRecord("c1")
		set(rec)
		err := s.CreateConnection(t.Context(), rec)
		wantCode(t, field, err, tokenkeeper.CodeInvalid)
		if err != nil && !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %q does not name the field", field, err)
		}
	}
	rec := newRecord("c1") // its access token's ciphertext starts with a NUL byte
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetConnection(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec.Tokens.AccessToken, got.Tokens.AccessToken); diff != "" {
		t.Errorf("sealed access token (-want +got):\n%s", diff)
	}
}

// TestListConnections_SubMicrosecondBound: a NextRefreshBefore bound with
// a sub-microsecond part must select a connection whose (microsecond)
// NextRefreshAt is strictly before it: the bound is rounded up, not
// truncated. The keeper passes its clock (time.Now, nanoseconds) as the
// bound. (storetest pins this for every backend and bound.)
func TestListConnections_SubMicrosecondBound(t *testing.T) {
	s := open(t)
	rec := newRecord("c1")
	rec.NextRefreshAt = time.Now().UTC().Truncate(time.Microsecond)
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	bound := rec.NextRefreshAt.Add(500 * time.Nanosecond) // after NextRefreshAt
	got, err := s.ListConnections(t.Context(), tokenkeeper.ConnectionFilter{NextRefreshBefore: bound})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("NextRefreshBefore %v: %d connections, want c1 (NextRefreshAt %v is before it)",
			bound, len(got), rec.NextRefreshAt)
	}
}

// TestOpen_WAL checks, from another connection, that the file is in WAL
// mode, which is a property of the file.
func TestOpen_WAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

// TestOpen_Reopen checks that what was committed survives Close and Open.
func TestOpen_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecord("c1")
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	lease, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sess := &tokenkeeper.Session{StateHash: []byte{1, 2, 3}, ConnectionID: "c1", CreatedAt: rec.CreatedAt}
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetConnection(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	rec.Lease = lease
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("record after reopen (-want +got):\n%s", diff)
	}
	if _, err := s.TakeSession(t.Context(), sess.StateHash); err != nil {
		t.Errorf("TakeSession after reopen: %v", err)
	}
}

// rawDB opens the file with the driver alone, closed at cleanup.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStore_ErrInvalid covers the arguments the store refuses outright.
func TestStore_ErrInvalid(t *testing.T) {
	s := open(t)
	if err := s.CreateConnection(t.Context(), newRecord("c1")); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.AcquireLease(t.Context(), "c1", "", time.Minute)
	wantCode(t, "AcquireLease with no owner", err, tokenkeeper.CodeInvalid)
	_, _, err = s.AcquireLease(t.Context(), "c1", "a", 0)
	wantCode(t, "AcquireLease with ttl 0", err, tokenkeeper.CodeInvalid)
	l, _, err := s.AcquireLease(t.Context(), "c1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.RenewLease(t.Context(), "c1", l, -time.Second)
	wantCode(t, "RenewLease with a negative ttl", err, tokenkeeper.CodeInvalid)
	wantCode(t, "CreateConnection(nil)", s.CreateConnection(t.Context(), nil), tokenkeeper.CodeInvalid)
	wantCode(t, "UpdateConnection(nil)", s.UpdateConnection(t.Context(), nil, 1), tokenkeeper.CodeInvalid)
	wantCode(t, "CreateSession(nil)", s.CreateSession(t.Context(), nil), tokenkeeper.CodeInvalid)
	wantCode(t, "CreateSession with no state hash", s.CreateSession(t.Context(), &tokenkeeper.Session{}), tokenkeeper.CodeInvalid)
}

// TestStore_ContextDone checks that a call on an ended context fails as
// unavailable, with the context's error in the chain.
func TestStore_ContextDone(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.GetConnection(ctx, "c1")
	wantCode(t, "GetConnection", err, tokenkeeper.CodeUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("GetConnection error %v does not wrap context.Canceled", err)
	}
	err = s.CreateConnection(ctx, newRecord("c1"))
	wantCode(t, "CreateConnection", err, tokenkeeper.CodeUnavailable)
}

func wantCode(t *testing.T, what string, err error, code tokenkeeper.Code) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Errorf("%s: code %q (%v), want %q", what, got, err, code)
	}
}

// newRecord returns a new connection with a few fields set.
func newRecord(id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	at := time.Now().UTC().Truncate(time.Microsecond)
	return &tokenkeeper.Record{
		Connection: tokenkeeper.Connection{
			ID: id, Provider: "pleo", State: tokenkeeper.StateActive, Generation: 1,
			Scopes: []string{"a"}, CreatedAt: at, UpdatedAt: at,
		},
		Tokens: tokenkeeper.SealedTokenSet{
			AccessToken: tokenkeeper.Sealed{KeyID: "k1", Ciphertext: []byte{0, 1, 2}},
			ExpiresAt:   at.Add(time.Hour),
		},
	}
}

// TestPing: Ping answers on an open store, and fails once it is closed.
func TestPing(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tk.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping on a closed store succeeded")
	}
}
