package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/tokenkeeper/tokenkeeper/seal"
)

// keyPollInterval is how often serve looks at its key file for a new keyset. `keys rotate`
// waits longer than twice this (--settle) before it seals anything under a new key.
const keyPollInterval = 5 * time.Second

// watchKeys reloads the keyset from path into keys whenever the file changes (its size,
// mode or modification time), until ctx ends. A file that does not parse, or drops the
// primary key in use, is refused with an error in the log, and the keyset in use stays:
// a bad edit never takes the service down, and never strands a token sealed a moment ago.
func watchKeys(ctx context.Context, path string, keys *seal.Keyring, log *slog.Logger, every time.Duration) {
	last, _ := os.Stat(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil {
			log.Error("key file: cannot read it; keeping the keyset in use", "path", path, "err", err)
			continue
		}
		if last != nil && fi.Size() == last.Size() && fi.ModTime().Equal(last.ModTime()) && fi.Mode() == last.Mode() {
			continue
		}
		last = fi
		ks, err := seal.Load(path)
		if err != nil {
			log.Error("key file changed but cannot be loaded; keeping the keyset in use", "path", path, "err", err)
			continue
		}
		before := keys.PrimaryKeyID()
		if err := keys.Replace(ks); err != nil {
			log.Error("key file changed but is refused; keeping the keyset in use", "path", path, "err", err)
			continue
		}
		log.Info("key file reloaded", "path", path, "key_ids", ks.KeyIDs(), "primary", ks.PrimaryKeyID(), "primary_before", before)
	}
}
