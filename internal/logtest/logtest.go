// Package logtest holds test helpers for captured log output. Only tests
// import it.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that many goroutines (a server's, a keeper's and
// the test's own) may write to and read at once. The zero value is empty
// and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
