package sqlite_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// The multi-process test re-executes the test binary as helper processes,
// which find their orders in these environment variables.
const (
	envHelperDB    = "TOKENKEEPER_SQLITE_HELPER_DB"
	envHelperOwner = "TOKENKEEPER_SQLITE_HELPER_OWNER"
)

// Each helper process acquires the lease this many times.
const helperAcquisitions = 40

// TestStore_Processes races helper processes for one connection's lease on
// one fresh file. Each opens the file at the same time as the others
// (so the migrations race too), then, helperAcquisitions times, acquires
// the lease and, while holding it, checks that nobody else holds it (by
// creating a marker file exclusively) and increments a counter in the
// record with UpdateLeased. If two processes ever held the lease at once,
// a marker would clash or an increment would fail or be lost.
func TestStore_Processes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "tokenkeeper.db")
	const processes = 3
	cmds := make([]*exec.Cmd, processes)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelperDB+"="+db, envHelperOwner+"="+fmt.Sprint("process-", i))
		out := &prefixWriter{t: t, prefix: fmt.Sprintf("process %d: ", i)}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}

	s, err := sqlite.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := s.GetConnection(t.Context(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	want := processes * helperAcquisitions
	if got := rec.Metadata["count"]; got != strconv.Itoa(want) {
		t.Errorf("count = %s, want %d (one per acquisition)", got, want)
	}
	if rec.Generation != int64(want+1) || rec.Lease.Fence != int64(want) {
		t.Errorf("generation %d, fence %d; want %d and %d", rec.Generation, rec.Lease.Fence, want+1, want)
	}
}

// TestHelperProcess is one process of TestStore_Processes; on its own it
// does nothing.
func TestHelperProcess(t *testing.T) {
	db, owner := os.Getenv(envHelperDB), os.Getenv(envHelperOwner)
	if db == "" {
		t.Skip("a helper of TestStore_Processes")
	}
	s, err := sqlite.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.CreateConnection(t.Context(), newRecord("shared"))
	if code := tokenkeeper.ErrorCode(err); code != "" && code != tokenkeeper.CodeConflict {
		t.Fatal(err)
	}

	marker := filepath.Join(filepath.Dir(db), "holder")
	var lastFence int64
	for done := 0; done < helperAcquisitions; {
		lease, rec, err := s.AcquireLease(t.Context(), "shared", owner, time.Minute)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeUnavailable {
			if rec == nil || rec.Lease.Owner == "" || rec.Lease.Owner == owner {
				t.Fatalf("refused the lease, but the record shows holder %v", rec)
			}
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if lease.Fence <= lastFence {
			t.Fatalf("fence %d after %d", lease.Fence, lastFence)
		}
		lastFence = lease.Fence
		if err := holding(t, s, marker, owner, lease, rec); err != nil {
			t.Fatal(err)
		}
		done++
	}
}

// holding does the work of a lease holder: claim the marker, increment
// the counter, drop the marker, release the lease.
func holding(t *testing.T, s *sqlite.Store, marker, owner string, lease tokenkeeper.Lease, rec *tokenkeeper.Record) error {
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		b, _ := os.ReadFile(marker)
		return fmt.Errorf("holding lease %+v, but %q holds it too: %w", lease, b, err)
	}
	fmt.Fprint(f, owner)
	f.Close()

	n, _ := strconv.Atoi(rec.Metadata["count"])
	time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond) // widen the window
	next := *rec
	next.Generation++
	next.Metadata = map[string]string{"count": strconv.Itoa(n + 1)}
	next.UpdatedAt = time.Now().UTC().Truncate(time.Microsecond)
	if err := s.UpdateLeased(t.Context(), &next, rec.Generation, lease); err != nil {
		return fmt.Errorf("fenced write while holding the lease: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	return s.ReleaseLease(t.Context(), "shared", lease)
}

// prefixWriter logs a helper's output line by line.
type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, p)
	return len(p), nil
}
