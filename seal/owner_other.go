//go:build !unix

package seal

import (
	"io/fs"
	"os"
)

// keepOwner does nothing where files have no Unix owner: the new file gets
// the directory's inherited permissions.
func keepOwner(*os.File, fs.FileInfo) error { return nil }
