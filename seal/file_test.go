package seal_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// writeFile writes data to a new file in a temporary directory, with mode.
func writeFile(t *testing.T, data []byte, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyset.json")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	c := newChecker(t)
	data := c.generate()
	want := c.parse(data)

	t.Run("OK", func(t *testing.T) {
		c := c.sub(t)
		k, err := seal.Load(writeFile(t, data, 0o600))
		c.ok(err)
		if diff := cmp.Diff(want.KeyIDs(), k.KeyIDs()); diff != "" {
			t.Errorf("KeyIDs (-want +got):\n%s", diff)
		}
	})
	t.Run("ReadOnly", func(t *testing.T) {
		_, err := seal.Load(writeFile(t, data, 0o400))
		c.sub(t).ok(err)
	})
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660} {
		t.Run(fmt.Sprintf("ErrMode%04o", mode), func(t *testing.T) {
			k, err := seal.Load(writeFile(t, data, mode))
			c.sub(t).fail(err, tokenkeeper.CodeInvalid, "chmod 600")
			if k != nil {
				t.Error("Load returned a Keyset with its error")
			}
		})
	}
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := seal.Load(filepath.Join(t.TempDir(), "absent.json"))
		c.sub(t).fail(err, tokenkeeper.CodeNotFound, "absent.json")
	})
	t.Run("ErrDirectory", func(t *testing.T) {
		_, err := seal.Load(t.TempDir())
		c.sub(t).fail(err, tokenkeeper.CodeInvalid, "not a regular file")
	})
	t.Run("ErrGarbage", func(t *testing.T) {
		path := writeFile(t, []byte(plaintext), 0o600)
		_, err := seal.Load(path)
		c.sub(t).fail(err, tokenkeeper.CodeInvalid, "load keyset "+path+": parse keyset")
	})
}

func TestReadFile(t *testing.T) {
	c := newChecker(t)
	data := c.generate()

	t.Run("OK", func(t *testing.T) {
		got, err := seal.ReadFile(writeFile(t, data, 0o600))
		c.sub(t).ok(err)
		if string(got) != string(data) {
			t.Error("ReadFile does not return the file's bytes")
		}
	})
	t.Run("Unparsed", func(t *testing.T) {
		// ReadFile leaves parsing to Parse: a watcher hashes what it read.
		got, err := seal.ReadFile(writeFile(t, []byte("{}"), 0o600))
		c.sub(t).ok(err)
		if string(got) != "{}" {
			t.Errorf("ReadFile = %q, want {}", got)
		}
	})
	t.Run("ErrMode0644", func(t *testing.T) {
		_, err := seal.ReadFile(writeFile(t, data, 0o644))
		c.sub(t).fail(err, tokenkeeper.CodeInvalid, "chmod 600")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := seal.ReadFile(filepath.Join(t.TempDir(), "absent.json"))
		c.sub(t).fail(err, tokenkeeper.CodeNotFound, "read keyset")
	})
	t.Run("ErrDirectory", func(t *testing.T) {
		_, err := seal.ReadFile(t.TempDir())
		c.sub(t).fail(err, tokenkeeper.CodeInvalid, "not a regular file")
	})
}

func TestWrite(t *testing.T) {
	c := newChecker(t)
	data := c.generate()

	t.Run("OK", func(t *testing.T) {
		c := c.sub(t)
		path := filepath.Join(t.TempDir(), "keyset.json")
		c.ok(seal.Write(path, data))
		checkFile(t, path, data)
		k, err := seal.Load(path)
		c.ok(err)
		if k.PrimaryKeyID() != c.parse(data).PrimaryKeyID() {
			t.Error("Load after Write gives another primary key")
		}
	})
	t.Run("Replace", func(t *testing.T) {
		c := c.sub(t)
		path := writeFile(t, data, 0o644)
		rotated, _, err := seal.Rotate(data)
		c.ok(err)
		c.ok(seal.Write(path, c.record(rotated)))
		checkFile(t, path, rotated)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		path := writeFile(t, data, 0o600)
		err := seal.Write(path, []byte(`{}`))
		c.sub(t).fail(err, tokenkeeper.CodeInvalid, "holds no keys")
		checkFile(t, path, data)
	})
	t.Run("ErrNoDirectory", func(t *testing.T) {
		err := seal.Write(filepath.Join(t.TempDir(), "absent", "keyset.json"), data)
		c.sub(t).fail(err, tokenkeeper.CodeInternal, "write keyset")
	})
}

// checkFile checks that path holds data with mode 0600, and that its
// directory holds no leftover temporary file.
func checkFile(t *testing.T, path string, data []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %04o, want 0600", mode)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Error("the file does not hold the keyset written")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only %s", names, filepath.Base(path))
	}
}
