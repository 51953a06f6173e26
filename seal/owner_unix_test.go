//go:build unix

package seal_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/seal"
)

// nobody is the uid and gid the owner tests give a keyset file.
const nobody = 65534

// owner returns the uid and gid of path.
func owner(t *testing.T, path string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestWrite_Owner: a keyset file rewritten by root (keys rotate run with sudo) keeps the
// owner and group of the service that reads it.
func TestWrite_Owner(t *testing.T) {
	c := newChecker(t)
	data := c.generate()
	rotated, _, err := seal.Rotate(data)
	c.ok(err)
	c.record(rotated)

	t.Run("Own", func(t *testing.T) {
		path := writeFile(t, data, 0o600)
		uid, gid := owner(t, path)
		c.sub(t).ok(seal.Write(path, rotated))
		checkFile(t, path, rotated)
		if u, g := owner(t, path); u != uid || g != gid {
			t.Errorf("owner = %d:%d, want %d:%d", u, g, uid, gid)
		}
	})
	t.Run("Other", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a file to another user")
		}
		path := writeFile(t, data, 0o600)
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		c.sub(t).ok(seal.Write(path, rotated))
		checkFile(t, path, rotated)
		if u, g := owner(t, path); u != nobody || g != nobody {
			t.Errorf("owner = %d:%d, want %d:%d (the old file's)", u, g, nobody, nobody)
		}
		// The file the service loads is the new one.
		k, err := seal.Load(path)
		c.sub(t).ok(err)
		if k.PrimaryKeyID() != c.parse(rotated).PrimaryKeyID() {
			t.Error("Load after Write gives another primary key")
		}
	})
	t.Run("ErrCannotKeep", func(t *testing.T) {
		// A user other than root cannot give the new file root's ownership: Write refuses
		// and leaves the file as it was, rather than hand the reader a file it cannot open.
		if os.Geteuid() != 0 {
			t.Skip("needs root, to run the writer as another user")
		}
		dir := worldDir(t)
		path := filepath.Join(dir, "keyset.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// nobody may create and rename files in dir, but the keyset belongs to root.
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(worldDir(t), "seal.test")
		copyFile(t, os.Args[0], bin)
		cmd := exec.Command(bin, "-test.run=^TestWrite_OwnerHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SEAL_TEST_WRITE="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("Write as uid %d over root's keyset succeeded; want a refusal:\n%s", nobody, out)
		}
		if !strings.Contains(string(out), "cannot be given that owner") {
			t.Errorf("the refusal does not say why:\n%s", out)
		}
		for _, secret := range c.secrets {
			if strings.Contains(string(out), secret) {
				t.Errorf("the refusal quotes key material:\n%s", out)
			}
		}
		checkFile(t, path, data)
		if u, g := owner(t, path); u != 0 || g != 0 {
			t.Errorf("owner = %d:%d, want root's", u, g)
		}
	})
}

// TestWrite_OwnerHelper is TestWrite_Owner/ErrCannotKeep's writer, run as another user.
func TestWrite_OwnerHelper(t *testing.T) {
	path := os.Getenv("SEAL_TEST_WRITE")
	if path == "" {
		t.Skip("run by TestWrite_Owner")
	}
	data, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Write(path, data); err != nil {
		t.Fatal(err)
	}
}

// worldDir returns a new directory that every user may enter.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "seal-owner-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
