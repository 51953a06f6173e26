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
	data, err := readFile("load keyset", path)
	if err != nil {
		return nil, err
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load keyset %s: %w", path, err)
	}
	return k, nil
}

// ReadFile reads the keyset file at path with the checks of [Load] and
// returns its content unparsed, so [Load] is ReadFile then [Parse]. A
// process that watches the file compares what ReadFile returns with the
// bytes its keyset was parsed from, which tells a change apart where the
// size and modification time may not. Its errors are Load's, less the
// parse errors, and name the file but never hold its content.
func ReadFile(path string) ([]byte, error) {
	return readFile("read keyset", path)
}

// readFile implements ReadFile; op begins its error messages.
func readFile(op, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "%s: %w", op, err)
		}
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "%s: %w", op, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "%s: %w", op, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, invalid("%s %s: not a regular file", op, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, invalid("%s %s: the file holds secret keys but its mode %04o lets group or others access it; run chmod 600 %s",
			op, path, perm, path)
	}
	data, err := readAll(f)
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "%s: read %s: %w", op, path, err)
	}
	return data, nil
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
// When path exists, the new file keeps its owner and group (on Unix; a
// no-op elsewhere): root rotating the keyset of a service that runs as
// another user must not leave it a file it cannot read. If the owner cannot
// be kept (only root may give a file away), Write fails with
// [tokenkeeper.CodeInternal] and leaves path as it was, rather than lock the
// service out of its keys at its next reload or restart.
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
	old, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "write keyset: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, "."+filepath.Base(path)+".tmp-*", data, old)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "write keyset %s: %w", path, err)
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
// creation on and, if old is not nil, old's owner and group; syncs it; and
// returns its name. On failure it removes it.
func writeTemp(dir, pattern string, data []byte, old fs.FileInfo) (name string, err error) {
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
	if old != nil {
		if err := keepOwner(f, old); err != nil {
			return "", err
		}
	}
	// CreateTemp promises 0600 today; say so explicitly, since the file will
	// hold keys. After the chown, which may clear mode bits.
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
