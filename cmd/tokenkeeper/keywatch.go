package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper/seal"
)

// keyPollInterval is how often serve looks at its key file for a new keyset. `keys rotate`
// waits longer than twice this (--settle) before it seals anything under a new key.
const keyPollInterval = 5 * time.Second

// keyFile is the keyset a service loaded from --key-file: the keyring that serves it, and
// the SHA-256 of the very bytes it was parsed from. That hash is the key watcher's
// baseline, so a file rewritten after the load, however soon, reads as a change.
type keyFile struct {
	path string
	keys *seal.Keyring
	sum  [sha256.Size]byte
}

// loadKeyFile reads the --key-file keyset for a service, which watches the file
// afterwards. Its errors are loadKeys's.
func loadKeyFile(s *settings) (*keyFile, error) {
	if err := s.requireKeyFile(); err != nil {
		return nil, err
	}
	data, err := seal.ReadFile(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.f.source("key-file"), err)
	}
	ks, err := seal.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: load keyset %s: %w", s.f.source("key-file"), s.keyFile, err)
	}
	return &keyFile{path: s.keyFile, keys: seal.NewKeyring(ks), sum: sha256.Sum256(data)}, nil
}

// keyWatcher keeps a service's keyring in step with its key file. Each poll it reads the
// file and compares the SHA-256 of its bytes with that of the bytes the keyset in use came
// from: content, not size or modification time, which two quick writes can leave equal. A
// changed file is parsed and swapped in with Keyring.Replace. A file that cannot be read,
// does not parse, or is refused (it drops the primary key in use) leaves the keyset in use
// in place (a bad edit never strands a token sealed a moment ago) but puts the watcher out
// of sync: Status reports why, /readyz answers 503 with that reason, and the gauge
// tokenkeeper_key_file_in_sync reads 0, until the file holds a keyset that loads or the
// one in use again.
//
// Run is its one goroutine; Status is safe to call from any other.
type keyWatcher struct {
	path    string
	keys    *seal.Keyring
	log     *slog.Logger
	inSync  prometheus.Gauge
	reloads *prometheus.CounterVec

	// Owned by Run.
	inUse    [sha256.Size]byte // the SHA-256 of the bytes of the keyset in use
	reported string            // the failure last logged and counted; "" when in sync

	mu      sync.Mutex
	problem error // why the file is out of sync; nil when in sync
}

// newKeyWatcher returns a watcher whose baseline is kf, registering its metrics on reg.
func newKeyWatcher(kf *keyFile, log *slog.Logger, reg prometheus.Registerer) (*keyWatcher, error) {
	w := &keyWatcher{path: kf.path, keys: kf.keys, log: log, inUse: kf.sum,
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenkeeper_key_file_in_sync",
			Help: "1 while the key file holds the keyset in use, 0 while it holds one that cannot be read, parsed or swapped in (see /readyz for why).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_keyset_reloads_total",
			Help: "Changes of the key file: swapped in (ok), or not (error: unreadable, unparsable or refused; counted once per failure, not per poll).",
		}, []string{"result"}),
	}
	w.inSync.Set(1)
	w.reloads.WithLabelValues("ok")
	w.reloads.WithLabelValues("error")
	for _, c := range []prometheus.Collector{w.inSync, w.reloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register the key watcher's metrics: %w", err)
		}
	}
	return w, nil
}

// Status returns nil while the key file holds the keyset in use, and otherwise an error
// saying why not. It names the file and the failure, never key material.
func (w *keyWatcher) Status() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.problem
}

// Run checks the key file at once, then every interval, until ctx ends.
func (w *keyWatcher) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check looks at the file once.
func (w *keyWatcher) check() {
	data, err := seal.ReadFile(w.path)
	if err != nil {
		// No content to name this failure by: the error text does, so that a file that
		// stays unreadable is logged once, and a different failure again.
		w.fail("read:"+err.Error(), "cannot be read", err)
		return
	}
	sum := sha256.Sum256(data)
	if sum == w.inUse {
		w.synced()
		return
	}
	id := hex.EncodeToString(sum[:])
	if w.reported == id {
		return // this content was refused already, and stays refused: the keyset in use has not changed
	}
	ks, err := seal.Parse(data)
	if err != nil {
		w.fail(id, "changed but does not parse", err)
		return
	}
	before := w.keys.PrimaryKeyID()
	if err := w.keys.Replace(ks); err != nil {
		w.fail(id, "changed but is refused", err)
		return
	}
	w.inUse = sum
	w.reloads.WithLabelValues("ok").Inc()
	w.log.Info("key file reloaded", "path", w.path, "key_ids", ks.KeyIDs(), "primary", ks.PrimaryKeyID(), "primary_before", before)
	w.synced()
}

// fail records that the file is out of sync: it "cannot be read", or "changed but is
// refused", because of err. It logs and counts a failure once, however many polls in a
// row see it; id names the failure (the file's hash, or the read error).
func (w *keyWatcher) fail(id, what string, err error) {
	w.mu.Lock()
	w.problem = fmt.Errorf("key file %s %s, so the keyset in use stays: %w", w.path, what, err)
	w.mu.Unlock()
	w.inSync.Set(0)
	if w.reported == id {
		return
	}
	w.reported = id
	w.reloads.WithLabelValues("error").Inc()
	w.log.Error("key file "+what+"; keeping the keyset in use", "path", w.path, "err", err)
}

// synced records that the file holds the keyset in use.
func (w *keyWatcher) synced() {
	w.mu.Lock()
	was := w.problem
	w.problem = nil
	w.mu.Unlock()
	w.inSync.Set(1)
	w.reported = ""
	if was != nil {
		w.log.Info("key file back in sync with the keyset in use", "path", w.path, "primary", w.keys.PrimaryKeyID())
	}
}
