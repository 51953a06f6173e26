package seal_test

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

func TestKeyring_Replace(t *testing.T) {
	c := newChecker(t)
	data := c.generate()
	added, _, err := seal.AddKey(data)
	c.ok(err)
	promoted, newID, err := seal.Rotate(data)
	c.ok(err)

	t.Run("OK", func(t *testing.T) {
		c := c.sub(t)
		ring := seal.NewKeyring(c.parse(data))
		before, err := ring.Seal([]byte(plaintext), adAccessA)
		c.ok(err)
		next := c.parse(promoted)
		c.ok(ring.Replace(next))
		if ring.Current() != next || ring.PrimaryKeyID() != newID {
			t.Errorf("after Replace: PrimaryKeyID %q, want %q", ring.PrimaryKeyID(), newID)
		}
		_, err = ring.Open(before, adAccessA)
		c.ok(err)
	})
	t.Run("ErrDropsPrimary", func(t *testing.T) {
		c := c.sub(t)
		old := c.parse(data)
		ring := seal.NewKeyring(old)
		err := ring.Replace(c.parse(c.generate()))
		c.fail(err, tokenkeeper.CodeInvalid, "does not hold the current primary key "+old.PrimaryKeyID())
		if ring.Current() != old {
			t.Error("a refused Replace changed the keyset")
		}
	})
	t.Run("ErrNil", func(t *testing.T) {
		c := c.sub(t)
		ring := seal.NewKeyring(c.parse(added))
		c.fail(ring.Replace(nil), tokenkeeper.CodeInvalid, "no keyset")
	})
	t.Run("Zero", func(t *testing.T) {
		c := c.sub(t)
		var ring seal.Keyring
		if ring.Current() != nil || ring.PrimaryKeyID() != "" {
			t.Error("the zero Keyring holds a keyset")
		}
		_, err := ring.Seal([]byte(plaintext), adAccessA)
		c.fail(err, tokenkeeper.CodeInternal, "no keyset")
		_, err = ring.Open(tokenkeeper.Sealed{KeyID: "1", Ciphertext: []byte{1}}, adAccessA)
		c.fail(err, tokenkeeper.CodeInternal, "no keyset")
		c.ok(ring.Replace(c.parse(data)))
		_, err = ring.Seal([]byte(plaintext), adAccessA)
		c.ok(err)
	})
}

// TestKeyring_Concurrent swaps keysets through two-phase rotations while
// many goroutines seal and open: no read may fail, including reads of
// values that other goroutines sealed under earlier keysets.
func TestKeyring_Concurrent(t *testing.T) {
	const (
		workers   = 16
		rotations = 10
	)
	c := newChecker(t)
	data := c.generate()
	ring := seal.NewKeyring(c.parse(data))

	// Phases: add a key, then promote it. Parse them all first, so that
	// checker is not shared with the goroutines.
	var keysets []*seal.Keyset
	for range rotations {
		added, id, err := seal.AddKey(data)
		c.ok(err)
		promoted, err := seal.Promote(added, id)
		c.ok(err)
		keysets = append(keysets, c.parse(added), c.parse(promoted))
		data = promoted
	}

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		shared []tokenkeeper.Sealed // sealed by any worker, opened by all
		errs   []error
		done   atomic.Int64 // iterations finished, by all workers
		failed atomic.Bool
		stop   = make(chan struct{})
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		failed.Store(true)
	}
	ad := tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn", tokenkeeper.FieldAccessToken)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				token := fmt.Appendf(nil, "%s-%d-%d", plaintext, w, i)
				s, err := ring.Seal(token, ad)
				if err != nil {
					fail(fmt.Errorf("seal: %w", err))
					return
				}
				if got, err := ring.Open(s, ad); err != nil || string(got) != string(token) {
					fail(fmt.Errorf("open a fresh seal under key %s: %w", s.KeyID, err))
					return
				}
				mu.Lock()
				shared = append(shared, s)
				old := shared[(len(shared)*7919+w)%len(shared)]
				mu.Unlock()
				if _, err := ring.Open(old, ad); err != nil {
					fail(fmt.Errorf("open an earlier seal under key %s: %w", old.KeyID, err))
					return
				}
				done.Add(1)
			}
		})
	}
	for _, k := range keysets {
		// Let the workers run under each keyset for a while.
		for start := done.Load(); done.Load() < start+4*workers && !failed.Load(); {
			runtime.Gosched()
		}
		if err := ring.Replace(k); err != nil {
			fail(fmt.Errorf("replace: %w", err))
		}
	}
	close(stop)
	wg.Wait()
	for _, err := range errs {
		c.noLeak(err)
		t.Error(err)
	}

	if got, want := ring.PrimaryKeyID(), keysets[len(keysets)-1].PrimaryKeyID(); got != want {
		t.Errorf("PrimaryKeyID = %s, want the last promoted key %s", got, want)
	}
	seen := make(map[string]bool)
	for _, s := range shared {
		seen[s.KeyID] = true
	}
	t.Logf("%d values sealed under %d keys", len(shared), len(seen))
}
