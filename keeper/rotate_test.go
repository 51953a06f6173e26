package keeper_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// rekey parses data and swaps it into the env's keyring.
func (e *env) rekey(data []byte) {
	e.t.Helper()
	ks, err := seal.Parse(data)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ring.Replace(ks); err != nil {
		e.t.Fatal(err)
	}
	e.keyset = data
}

// keyIDs returns the key ids of rec's sealed tokens.
func keyIDs(rec *tokenkeeper.Record) []string {
	return []string{rec.Tokens.AccessToken.KeyID, rec.Tokens.RefreshToken.KeyID}
}

func TestKeeper_Reseal_UnderLoad(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var ids []tokenkeeper.ConnectionID
	for i := range 20 {
		id := tokenkeeper.ConnectionID(fmt.Sprintf("conn-%02d", i))
		ids = append(ids, id)
		e.connect(id)
	}
	oldKey := e.ring.PrimaryKeyID()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, readFailures atomic.Int64
	var firstReadErr atomic.Pointer[string]
	passes := make([]atomic.Int64, 4) // completed passes per reader
	for r := range passes {
		wg.Go(func() {
			for {
				for _, id := range ids {
					tok, err := keeper.LoadToken(ctx, e.k, id)
					reads.Add(1)
					if err == nil && tok.Value.IsZero() {
						err = fmt.Errorf("connection %s holds no access token", id)
					}
					if err != nil {
						readFailures.Add(1)
						s := err.Error()
						firstReadErr.CompareAndSwap(nil, &s)
					}
				}
				passes[r].Add(1)
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	var cycles, refreshErrs atomic.Int64
	var firstRefreshErr atomic.Pointer[string]
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Past every promise, then ask for the tokens of the first
			// half: one refresh each. The second half is left to Reseal.
			if _, err := e.srv.Advance(13 * time.Minute); err != nil {
				t.Error(err)
				return
			}
			for _, id := range ids[:10] {
				if _, err := e.token(e.k, id); err != nil {
					refreshErrs.Add(1)
					s := err.Error()
					firstRefreshErr.CompareAndSwap(nil, &s)
				}
			}
			cycles.Add(1)
		}
	})
	waitCycles := func(n int64) {
		t.Helper()
		from := cycles.Load()
		waitFor(t, fmt.Sprintf("%d refresh cycles", n), func() bool { return cycles.Load() >= from+n })
	}
	waitCycles(1)
	start := time.Now()
	phase := func(name string) { t.Logf("%s at %s", name, time.Since(start).Round(time.Millisecond)) }

	// Phase 1: add a key; every process would load this keyset first.
	added, newKey, err := seal.AddKey(e.keyset)
	if err != nil {
		t.Fatal(err)
	}
	e.rekey(added)
	waitCycles(1)
	// Phase 2: promote it; new seals use it.
	promoted, err := seal.Promote(added, newKey)
	if err != nil {
		t.Fatal(err)
	}
	e.rekey(promoted)
	phase("promoted")
	var last keeper.ResealProgress
	var calls int
	res, err := e.k.Reseal(ctx, func(p keeper.ResealProgress) { last = p; calls++ })
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if res.Seen != 20 || last.Seen != 20 || calls != 20 || last != res {
		t.Fatalf("Reseal result %+v, last progress %+v after %d calls; want Seen 20, one call per connection", res, last, calls)
	}
	// The connections nobody refreshes are moved by Reseal alone.
	if res.Resealed < 10 || res.Resealed > 20 {
		t.Fatalf("Reseal moved %d connections, want 10 to 20", res.Resealed)
	}
	phase("resealed")
	for _, id := range ids {
		if got := keyIDs(e.record(id)); got[0] != newKey || got[1] != newKey {
			t.Fatalf("%s sealed with keys %v after Reseal, want %s", id, got, newKey)
		}
	}
	// Retire the old key, once every reader has finished a pass begun after
	// Reseal (a read begun before it may hold a record sealed under the old
	// key).
	var marks [4]int64
	for r := range passes {
		marks[r] = passes[r].Load()
	}
	waitFor(t, "a full read pass after Reseal", func() bool {
		for r := range passes {
			if passes[r].Load() < marks[r]+2 {
				return false
			}
		}
		return true
	})
	removed, err := seal.Remove(promoted, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	e.rekey(removed)
	phase("removed")
	waitCycles(2)
	phase("stopping")
	close(stop)
	wg.Wait()

	if n := readFailures.Load(); n != 0 {
		t.Fatalf("%d of %d reads failed; first: %s", n, reads.Load(), *firstReadErr.Load())
	}
	if n := refreshErrs.Load(); n != 0 {
		t.Fatalf("%d Token calls failed during the rotation; first: %s", n, *firstRefreshErr.Load())
	}
	for _, id := range ids {
		if _, err := keeper.LoadToken(ctx, e.k, id); err != nil {
			t.Fatalf("%s does not load after the old key was removed: %v", id, err)
		}
		tok, err := e.token(e.k, id)
		if err != nil || e.api(tok.Value) != 200 {
			t.Fatalf("%s: no working token after the rotation: %v", id, err)
		}
	}
	again, err := e.k.Reseal(ctx, nil)
	if err != nil || again.Seen != 20 || again.Resealed != 0 {
		t.Fatalf("second Reseal: %+v, %v; want Seen 20, Resealed 0", again, err)
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
	t.Logf("%d refresh cycles, %d reads, %d resealed", cycles.Load(), reads.Load(), res.Resealed)
}

// A Reseal that meets a refresh in flight on the same keeper must wait for
// it: the two share the keeper's lease owner, and a store lets an owner
// re-acquire its own lease.
func TestKeeper_Reseal_DuringRefresh(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	resealDone := make(chan error, 1)
	var once sync.Once
	keeper.SetHook(e.k, func(step string, _ tokenkeeper.ConnectionID) {
		if step != "sending" {
			return
		}
		once.Do(func() {
			// The marker is stored and the request about to leave: rotate
			// the key and re-seal now.
			go func() {
				_, err := e.k.Reseal(ctx, nil)
				resealDone <- err
			}()
			select {
			case err := <-resealDone:
				resealDone <- err // Reseal did not wait for the lease
			case <-time.After(300 * time.Millisecond):
			}
		})
	})
	e.connect("acme")
	old := e.mustToken("acme")
	added, newKey, err := seal.AddKey(e.keyset)
	if err != nil {
		t.Fatal(err)
	}
	e.rekey(added)
	promoted, err := seal.Promote(added, newKey)
	if err != nil {
		t.Fatal(err)
	}
	e.rekey(promoted)
	e.expire("acme")
	tok, err := e.token(e.k, "acme")
	if err != nil {
		t.Fatalf("Token, with a Reseal during its refresh: %v", err)
	}
	if err := <-resealDone; err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if tok.Value.Equal(old.Value) || e.api(tok.Value) != 200 {
		t.Fatal("no working new token")
	}
	rec := e.record("acme")
	if rec.State != tokenkeeper.StateActive || !rec.Pending.IsZero() {
		t.Fatalf("record: state %s, pending %+v", rec.State, rec.Pending)
	}
	if got := keyIDs(rec); got[0] != newKey || got[1] != newKey {
		t.Fatalf("keys %v, want %s", got, newKey)
	}
	if ok, dead := e.refreshes("ok"), e.refreshes("invalid_grant"); ok != 1 || dead != 0 {
		t.Fatalf("refresh outcomes ok=%d invalid_grant=%d, want 1 and 0", ok, dead)
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}
