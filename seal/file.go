package seal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/tokenkeeper/tokenkeeper"
)

// Load reads and parses the keyset file at path (cleartext Tink JSON, see
// [Parse]).
//
// Because the file holds the keys in cleartext, Load refuses, with
// [tokenkeeper.CodeInvalid], a file that group or others may read or write
// (any bit of mode 0o077): run chmod 600 on it. File modes are a Unix
// notion; elsewhere the check passes. Load fails with
// [tokenkeeper.CodeNotFound] if the file does not exist, with CodeInvalid if
// it does not parse, and with [tokenkeeper.CodeInternal] on other I/O errors.
func Load(path string) (*Keyset, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "load keyset: %w", err)
		}
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "load keyset: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "load keyset: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, invalid("load keyset %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, invalid("load keyset %s: the file holds secret keys but its mode %04o lets group or others access it; run chmod 600 %s",
			path, perm, path)
	}
	data, err := readAll(f)
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "load keyset: read %s: %w", path, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load keyset %s: %w", path, err)
	}
	return k, nil
}

// maxKeysetSize bounds what Load reads: a keyset of a thousand keys is far
// smaller.
const maxKeysetSize = 1 << 20

func readAll(f *os.File) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxKeysetSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeysetSize {
		return nil, fmt.Errorf("file is larger than a keyset's %d bytes", maxKeysetSize)
	}
	return data, nil
}

// Write writes keyset data (from [Generate], [AddKey], [Promote], [Rotate]
// or [Remove]) to path, atomically: a reader sees the old file or the new
// one, never a mix, and never a file that group or others may read. The new
// file has mode 0600, whatever the old one had. It writes a temporary file
// in the same directory, syncs it, renames it over path, and syncs the
// directory.
//
// Write refuses data that does not [Parse], with [tokenkeeper.CodeInvalid],
// so a botched edit cannot replace a good keyset. It fails with
// [tokenkeeper.CodeInternal] on I/O errors. Before the rename, a failure
// leaves path as it was and removes the temporary file; after it (syncing
// the directory), the new keyset is in place but may not survive a crash.
func Write(path string, data []byte) error {
	if _, err := Parse(data); err != nil {
		return fmt.Errorf("write keyset %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, "."+filepath.Base(path)+".tmp-*", data)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "write keyset: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "write keyset: %w", err)
	}
	// The rename is durable only once the directory is synced. The new file
	// is in place by now, so a failure here is reported but undoes nothing.
	if err := syncDir(dir); err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "write keyset: %w", err)
	}
	return nil
}

// writeTemp writes data to a new file in dir, with mode 0600 from its
// creation on, syncs it, and returns its name. On failure it removes it.
func writeTemp(dir, pattern string, data []byte) (name string, err error) {
	f, err := os.CreateTemp(dir, pattern) // mode 0600 before any byte is in it
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp promises 0600 today; say so explicitly, since the file will
	// hold keys.
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
