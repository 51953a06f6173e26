// Package sqlite is the embedded default [tokenkeeper.Store]: one SQLite
// file (through modernc.org/sqlite, pure Go) that several processes on one
// host may share. The file must be on a local file system: WAL mode shares
// memory between processes, which network file systems do not support.
//
// The file is in WAL mode with synchronous=FULL, so a committed token set
// survives a crash or a power loss. Every write that reads before it writes
// (a compare and swap, a lease acquisition, taking a session) is one
// conditional statement or one BEGIN IMMEDIATE transaction, so it is atomic
// across goroutines and processes. Within a process, writes go through one
// connection, so they queue in Go rather than poll SQLite's busy handler;
// across processes they wait on SQLite's lock for up to [BusyTimeout].
//
// Times are stored as unix microseconds in UTC (0 for the zero time) and
// come back in UTC, truncated to the microsecond; a non-zero time at exactly
// the unix epoch therefore reads back as the zero time. The store holds no
// policy: the lease clock is the host's wall clock (time.Now), and every
// other time is stored as given.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// BusyTimeout is how long a statement waits for another process's write
// lock before it fails with [tokenkeeper.CodeUnavailable].
const BusyTimeout = 10 * time.Second

// Store is a [tokenkeeper.Store], a [tokenkeeper.APIKeyStore] and a
// [tokenkeeper.AuditLog] on one SQLite file. Make it with [Open]; the zero
// Store is not usable. It is safe for concurrent use by many goroutines,
// and many processes may open the same file.
//
// Errors name the operation ("sqlite: acquire lease c1: ...") and carry a
// [tokenkeeper.Code]. Besides the codes each method lists, every method may
// fail with CodeUnavailable (another process held the database's lock for
// longer than [BusyTimeout], or ctx ended; the context's error stays in the
// chain) or CodeInternal.
type Store struct {
	// write has one connection: every write and every read that must see
	// its own transaction goes through it.
	write *sql.DB
	// read is a pool of query-only connections for plain reads, which WAL
	// mode lets run beside a writer.
	read *sql.DB
	// stmts are the statements, prepared on read and write at Open.
	stmts stmts
	// now is the lease clock.
	now func() time.Time
}

var _ tokenkeeper.Store = (*Store)(nil)

// Open opens the database at path, creating the file (mode 0600: it holds
// sealed tokens) if it does not exist, and migrates it to the current
// schema. SQLite gives the -wal and -shm files the mode of the database
// file. Several processes may open the same file, a fresh one included, at
// the same time.
//
// Open resolves path once, as the kernel would (symbolic links first, then
// "..", so "link/../x.db" is next to the link's target, not next to the
// link), and both creates the file and hands SQLite that one resolved path.
// If the last element of path is itself a symbolic link, it must point to
// an existing file.
//
// Open refuses, with [tokenkeeper.CodeInvalid], an existing database file
// (or -wal or -shm file) that group or others may access (any bit of mode
// 0o077): run chmod 600 on it. File modes are a Unix notion; on Windows the
// check passes.
//
// ctx bounds the opening, the migration and the preparing of the
// statements only; the Store does not keep it. Open fails if the file is
// not a database, if its schema is newer than this build knows, or if it
// cannot be put in WAL mode (as on some network file systems). Close the
// Store when done.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "sqlite: open: the database path is empty")
	}
	resolved, err := resolve(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := create(resolved); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	s := &Store{now: time.Now}
	s.write, err = sql.Open("sqlite", dsn(resolved,
		"_txlock=immediate",
		"_synchronous=FULL",
	))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.write.SetMaxOpenConns(1)

	if err := s.setUp(ctx); err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	s.read, err = sql.Open("sqlite", dsn(resolved, "_query_only=1"))
	if err != nil {
		s.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)

	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// resolve returns path made absolute with every symbolic link resolved, as
// the kernel resolves it: a ".." after a link climbs out of the link's
// target, where filepath.Clean and filepath.Abs would drop the link
// lexically. The directory must exist; the file need not.
func resolve(path string) (string, error) {
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return "", tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "the database path %s names a directory", path)
	}
	if dir == "" {
		dir = "."
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(resolved) {
		// resolved has no links but may start with "..": join it to the
		// working directory with its links resolved too (os.Getwd may
		// return $PWD, which can hold links), so that joining lexically is
		// right.
		wd, err := os.Getwd()
		if err == nil {
			wd, err = filepath.EvalSymlinks(wd)
		}
		if err != nil {
			return "", err
		}
		resolved = filepath.Join(wd, resolved)
	}
	resolved = filepath.Join(resolved, base)
	if fi, err := os.Lstat(resolved); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		// SQLite would follow the link to name the -wal and -shm files;
		// resolve it here, so that the file created and checked is the one
		// SQLite opens.
		return filepath.EvalSymlinks(resolved)
	}
	return resolved, nil
}

// create creates the database file at path, a resolved path, with mode
// 0600 if it does not exist, and checks that an existing one (and its -wal
// and -shm files) is a regular file that group and others cannot access.
func create(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "%s is not a regular file", path)
	}
	if err := checkMode(path, fi); err != nil {
		return err
	}
	for _, name := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := checkMode(name, fi); err != nil {
			return err
		}
	}
	return nil
}

// checkMode returns a CodeInvalid error if fi, the file name, lets group or
// others access it. File modes are a Unix notion: on Windows, where Go
// derives them from the read-only attribute, it returns nil.
func checkMode(name string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"%s holds sealed tokens but its mode %04o lets group or others access it; run chmod 600 %s",
			name, perm, name)
	}
	return nil
}

// setUp puts the file in WAL mode and migrates the schema.
func (s *Store) setUp(ctx context.Context) error {
	// Turning a fresh file to WAL takes an exclusive lock, and SQLite
	// reports SQLITE_BUSY for it at once, without the busy handler, if
	// another process is opening the file too: retry for as long as the
	// busy handler would wait. Once the file is in WAL mode, this is a
	// no-op.
	var mode string
	err := retryBusy(ctx, func() error {
		return mapErr(s.write.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode))
	})
	if err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not wal (is the file on a network file system?)", mode)
	}
	return migrate(ctx, s.write)
}

// retryBusy calls fn until it returns anything but CodeUnavailable, ctx
// ends, or BusyTimeout has passed.
func retryBusy(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := fn()
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait + rand.N(wait)):
		}
	}
}

// dsn returns the modernc.org/sqlite data source name for path, a path from
// resolve (used as it is: it is the file Open created and checked), with
// the settings every connection shares, and extra.
func dsn(path string, extra ...string) string {
	// A "file:" URI, so that SQLite sees the path whole: escape what a URI
	// would read as its query, fragment or an escape.
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	params := append([]string{
		fmt.Sprintf("_busy_timeout=%d", BusyTimeout.Milliseconds()),
		"_foreign_keys=1",
	}, extra...)
	return "file:" + p + "?" + strings.Join(params, "&")
}

// Close closes the database. Calls in flight may fail; leases held through
// the Store are not released (they expire). Close is safe to call more
// than once.
func (s *Store) Close() error {
	return errors.Join(s.closeStmts(), s.read.Close(), s.write.Close())
}

var _ tokenkeeper.Pinger = (*Store)(nil)

// Ping checks that the database file can be read, within ctx.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", mapErr(err))
	}
	return nil
}
