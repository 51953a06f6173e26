package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// watchEnv is a key file, the keyset loaded from it, and a watcher over both.
type watchEnv struct {
	t    *testing.T
	path string
	data []byte // what the keyset in use was loaded from
	w    *keyWatcher
	log  *logtest.Buffer
}

// newWatchEnv writes data to a key file, loads it, and makes its watcher. It polls only
// when the test calls check.
func newWatchEnv(t *testing.T, data []byte) *watchEnv {
	t.Helper()
	e := &watchEnv{t: t, path: t.TempDir() + "/keyset.json", data: data, log: &logtest.Buffer{}}
	e.write(data)
	ks, err := seal.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	kf := &keyFile{path: e.path, keys: seal.NewKeyring(ks), sum: sha256.Sum256(data)}
	e.w, err = newKeyWatcher(kf, slog.New(slog.NewTextHandler(e.log, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// write replaces the key file with data, as `keys rotate` does.
func (e *watchEnv) write(data []byte) {
	e.t.Helper()
	// seal.Write refuses what does not parse; the tests also write such files.
	tmp := e.path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path); err != nil {
		e.t.Fatal(err)
	}
}

// want checks the watcher's state: in sync or not (with the reason containing problem),
// the primary key in use, and the reload counts.
func (e *watchEnv) want(problem, primary string, ok, failed float64) {
	e.t.Helper()
	err := e.w.Status()
	switch {
	case problem == "" && err != nil:
		e.t.Errorf("Status = %v; want in sync", err)
	case problem != "" && (err == nil || !strings.Contains(err.Error(), problem)):
		e.t.Errorf("Status = %v; want an error containing %q", err, problem)
	}
	gauge := 1.0
	if problem != "" {
		gauge = 0
	}
	if got := testutil.ToFloat64(e.w.inSync); got != gauge {
		e.t.Errorf("tokenkeeper_key_file_in_sync = %v; want %v", got, gauge)
	}
	if got := e.w.keys.PrimaryKeyID(); got != primary {
		e.t.Errorf("primary key in use = %s; want %s", got, primary)
	}
	if got := testutil.ToFloat64(e.w.reloads.WithLabelValues("ok")); got != ok {
		e.t.Errorf(`reloads{result="ok"} = %v; want %v`, got, ok)
	}
	if got := testutil.ToFloat64(e.w.reloads.WithLabelValues("error")); got != failed {
		e.t.Errorf(`reloads{result="error"} = %v; want %v`, got, failed)
	}
}

func primaryOf(t *testing.T, data []byte) string {
	t.Helper()
	ks, err := seal.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return ks.PrimaryKeyID()
}

func generate(t *testing.T) []byte {
	t.Helper()
	data, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestKeyWatcher_SameSizeAndMtime: a promotion written with the size, mode and
// modification time of the file it replaces is still picked up, because the watcher
// compares content.
func TestKeyWatcher_SameSizeAndMtime(t *testing.T) {
	added, newID, err := seal.AddKey(generate(t))
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := seal.Promote(added, newID)
	if err != nil {
		t.Fatal(err)
	}
	// Pad the shorter with trailing white space (still valid JSON) to the same size.
	for len(added) < len(promoted) {
		added = append(added, ' ')
	}
	for len(promoted) < len(added) {
		promoted = append(promoted, ' ')
	}
	e := newWatchEnv(t, added)
	before, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.write(promoted)
	if err := os.Chtimes(e.path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Fatalf("the test did not keep size, mode and mtime: %v %v %v / %v %v %v",
			before.Size(), before.Mode(), before.ModTime(), after.Size(), after.Mode(), after.ModTime())
	}
	e.w.check()
	e.want("", newID, 1, 0)
	e.w.check() // no change: nothing happens
	e.want("", newID, 1, 0)
}

// TestKeyWatcher_OutOfSync: a file the watcher cannot use puts it out of sync, with a
// reason, until the file holds a keyset it can use or the one in use again; each failure
// is logged and counted once, however many polls see it.
func TestKeyWatcher_OutOfSync(t *testing.T) {
	data := generate(t)
	first := primaryOf(t, data)

	t.Run("Refused", func(t *testing.T) {
		e := newWatchEnv(t, data)
		stranger := generate(t) // lacks the primary key in use
		e.write(stranger)
		for range 3 {
			e.w.check()
		}
		e.want("changed but is refused", first, 0, 1)
		e.want("does not hold the current primary key", first, 0, 1)
		if n := strings.Count(e.log.String(), "level=ERROR"); n != 1 {
			t.Errorf("%d errors logged for one refused file over three polls; want 1:\n%s", n, e.log)
		}
		// A keyset that keeps the primary in use and adds one is swapped in.
		rotated, newID, err := seal.Rotate(data)
		if err != nil {
			t.Fatal(err)
		}
		e.write(rotated)
		e.w.check()
		e.want("", newID, 1, 1)
		// The refused file again: refused again (against the new primary), logged again.
		e.write(stranger)
		e.w.check()
		e.want("changed but is refused", newID, 1, 2)
	})
	t.Run("Restored", func(t *testing.T) {
		e := newWatchEnv(t, data)
		e.write(generate(t))
		e.w.check()
		e.want("changed but is refused", first, 0, 1)
		e.write(data) // the operator puts the old file back
		e.w.check()
		e.want("", first, 0, 1)
		if !strings.Contains(e.log.String(), "back in sync") {
			t.Errorf("no log says the key file is back in sync:\n%s", e.log)
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		e := newWatchEnv(t, data)
		e.write([]byte(`{"primaryKeyId": 1, "key": [`))
		e.w.check()
		e.w.check()
		e.want("changed but does not parse", first, 0, 1)
		e.write(data)
		e.w.check()
		e.want("", first, 0, 1)
	})
	t.Run("Directory", func(t *testing.T) {
		e := newWatchEnv(t, data)
		if err := os.Remove(e.path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(e.path, 0o700); err != nil {
			t.Fatal(err)
		}
		e.w.check()
		e.w.check()
		e.want("cannot be read", first, 0, 1)
		e.want("not a regular file", first, 0, 1)
		if err := os.Remove(e.path); err != nil {
			t.Fatal(err)
		}
		e.w.check() // a different failure: gone
		e.want("cannot be read", first, 0, 2)
		e.write(data)
		e.w.check()
		e.want("", first, 0, 2)
	})
	t.Run("Mode", func(t *testing.T) {
		e := newWatchEnv(t, data)
		if err := os.Chmod(e.path, 0o644); err != nil {
			t.Fatal(err)
		}
		e.w.check()
		e.want("chmod 600", first, 0, 1)
	})
	t.Run("NoKeyMaterial", func(t *testing.T) {
		e := newWatchEnv(t, data)
		other := generate(t)
		e.write(append(bytes.Clone(other), "garbage"...))
		e.w.check()
		e.want("does not parse", first, 0, 1)
		var ks struct {
			Key []struct{ KeyData struct{ Value string } }
		}
		if err := json.Unmarshal(other, &ks); err != nil || len(ks.Key) == 0 {
			t.Fatalf("keyset JSON: %v", err)
		}
		for _, k := range ks.Key {
			if strings.Contains(e.w.Status().Error(), k.KeyData.Value) || strings.Contains(e.log.String(), k.KeyData.Value) {
				t.Error("the reason or the log quotes key material")
			}
		}
	})
}

// TestKeyWatcher_Run: Run checks at once, so a file changed between the load and the
// watcher's start is picked up on its first look, then on every tick.
func TestKeyWatcher_Run(t *testing.T) {
	data := generate(t)
	e := newWatchEnv(t, data)
	rotated, newID, err := seal.Rotate(data)
	if err != nil {
		t.Fatal(err)
	}
	e.write(rotated) // before Run: the old watcher took this as its baseline
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.w.Run(ctx, time.Hour) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.w.keys.PrimaryKeyID() != newID {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up a file changed before it started")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
