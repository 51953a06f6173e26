//go:build unix

package seal

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of old, the file f is about to
// replace. It does nothing when they already match, which is the common case
// of a user rewriting their own file, so only a change of owner needs root
// (or, for the group alone, membership of it).
func keepOwner(f *os.File, old fs.FileInfo) error {
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if got, ok := fi.Sys().(*syscall.Stat_t); ok && got.Uid == want.Uid && got.Gid == want.Gid {
		return nil
	}
	if err := f.Chown(int(want.Uid), int(want.Gid)); err != nil {
		return fmt.Errorf("the keyset file belongs to uid %d gid %d, and the new file cannot be given that owner, "+
			"so the user that reads it might no longer be able to (run this as that user, or as root): %w",
			want.Uid, want.Gid, err)
	}
	return nil
}
