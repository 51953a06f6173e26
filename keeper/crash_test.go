package keeper_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// TestKeeper_Crash kills a keeper process (SIGKILL) at each step of a
// refresh, then starts a fresh keeper (a new owner) on the same SQLite file
// and asks it for a token. Whatever the crash point, the restarted keeper
// must never present a refresh token it knows to be rotated out, must make
// at most one attempt whose outcome it cannot know, and must say so when
// the grant is dead.
func TestKeeper_Crash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes and kills them")
	}
	const conn = "acme"
	const (
		refreshTimeout = 750 * time.Millisecond
		leaseTTL       = 1500 * time.Millisecond // the dead owner's lease lapses this long after its last renewal
		// heldFor is how long the emulator holds the in-flight request: less
		// than a lease can last after its holder died, so the held request
		// has ended before anyone else may refresh.
		heldFor = 300 * time.Millisecond
	)
	const lost = "refresh response lost"
	const unknownLog = "refresh: an earlier refresh's outcome is unknown; one more attempt with the stored refresh token"
	for _, tc := range []struct {
		name string
		// step is where the child stops: "leased" (lease taken, no marker
		// yet) or a keeper.SetHook step.
		step string
		// inFlight: the child is not stopped at step but killed once the
		// emulator holds its request (the token endpoint is slowed).
		inFlight bool
		// pending: the record the dead child left holds its marker.
		pending bool
		// committed: the dead child committed the new pair.
		committed bool
		// reconnect: the restarted keeper ends the connection (the provider
		// rotated, and the new pair died with the child); else it returns a
		// working token.
		reconnect bool
		// unknown: the restarted keeper finds an outcome-unknown marker.
		unknown bool
		// refreshes are the emulator's refresh_token outcomes at the end.
		refreshes map[string]int64
		// violations are the emulator's violations, "rule" or
		// "rule (lost response)".
		violations []string
	}{{
		// Killed after taking the lease, before writing the marker: nothing
		// was sent, and nothing says so but the lease, which lapses.
		name:      "BeforeMarker",
		step:      "leased",
		refreshes: map[string]int64{"ok": 1},
	}, {
		// Killed after the marker is durable, before the request leaves: the
		// restarted keeper cannot know that nothing was sent, so it makes
		// its one attempt with the stored refresh token, which succeeds.
		name:      "BeforeSending",
		step:      "sending",
		pending:   true,
		unknown:   true,
		refreshes: map[string]int64{"ok": 1},
	}, {
		// Killed while the provider holds the request: the provider rotates
		// all the same and answers nobody. The restarted keeper's one
		// attempt presents the rotated-out refresh token; Pleo revokes the
		// grant, and the keeper says the response was lost. The emulator
		// excuses the reuse: the client had gone before the answer.
		name:       "InFlight",
		step:       "sending",
		inFlight:   true,
		pending:    true,
		reconnect:  true,
		unknown:    true,
		refreshes:  map[string]int64{"ok": 1, "invalid_grant": 1},
		violations: []string{emulator.RuleRefreshTokenReuse + " (lost response)"},
	}, {
		// Killed with the new pair read but not committed. As for InFlight,
		// but the emulator delivered the answer to a live client, so it
		// cannot excuse the reuse that follows: the ledger shows a plain
		// refresh_token_reuse. No keeper can avoid it; the pair existed only
		// in the dead process.
		name:       "AfterResponse",
		step:       "received",
		pending:    true,
		reconnect:  true,
		unknown:    true,
		refreshes:  map[string]int64{"ok": 1, "invalid_grant": 1},
		violations: []string{emulator.RuleRefreshTokenReuse},
	}, {
		// Killed right after the commit: nothing is lost, and the committed
		// token is served without a refresh (and without the lease, which
		// the dead child still holds).
		name:      "AfterCommit",
		step:      "committed",
		committed: true,
		refreshes: map[string]int64{"ok": 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			crashTimings := func(c *keeper.Config, _ *emulator.Config) {
				c.RefreshTimeout, c.LeaseTTL = refreshTimeout, leaseTTL
			}
			e := newEnv(t, crashTimings)
			e.connect(conn)
			fr := newTokenFront(t, e)
			before := e.record(conn)
			// Make the refresh due at once: past the promise and its grace.
			if _, err := e.srv.Advance(before.Tokens.ExpiresAt.Add(20*time.Millisecond + time.Millisecond).Sub(e.srv.Now())); err != nil {
				t.Fatal(err)
			}
			if tc.inFlight {
				e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(heldFor), Max: emulator.Duration(heldFor)}}})
			}

			cfg := e.childBase("crash", "doomed", conn)
			cfg.URL, cfg.APIURL = fr.url, fr.url
			cfg.DrainGrace, cfg.DrainWait = 20*time.Millisecond, 200*time.Millisecond
			cfg.RefreshTimeout, cfg.LeaseTTL = refreshTimeout, leaseTTL
			cfg.ScheduleInterval = time.Second
			cfg.Step, cfg.Block = tc.step, !tc.inFlight
			ch := startChild(t, "doomed", cfg)
			ch.expect("READY", 30*time.Second)
			ch.expect("STEP "+tc.step, 20*time.Second)
			if tc.inFlight {
				pollChildren(t, 10*time.Second, func() string { return "the emulator to receive the refresh" },
					func() bool { return fr.tokenRequests.Load() >= 1 }, ch)
			}
			ch.kill()

			// What the dead process left behind.
			dead := e.record(conn)
			if dead.Lease.Owner != "doomed" {
				t.Errorf("after the kill the lease is held by %q, want the dead child's", dead.Lease.Owner)
			}
			switch {
			case tc.pending && (dead.Pending.IsZero() || dead.Pending.Owner != "doomed"):
				t.Fatalf("after a kill at %s: marker %+v, want the dead child's", tc.step, dead.Pending)
			case !tc.pending && !dead.Pending.IsZero():
				t.Fatalf("after a kill at %s: marker %+v, want none", tc.step, dead.Pending)
			case tc.committed != (dead.Generation == before.Generation+2):
				// The marker write is one generation, the commit another.
				t.Fatalf("after a kill at %s: generation %d (from %d); committed should be %v", tc.step, dead.Generation, before.Generation, tc.committed)
			}
			if tc.inFlight {
				e.faults(nil) // the held request keeps its latency; the next is not slowed
			}

			// The restart: a new owner on the same file.
			var kcfg keeper.Config
			fast(&kcfg, nil)
			crashTimings(&kcfg, nil)
			kcfg.Owner = "restarted"
			k := e.newKeeper(kcfg)
			tok, err := e.token(k, conn)
			switch {
			case tc.reconnect && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired:
				t.Fatalf("Token after the restart: %v (code %q), want reconnect_required%s", err, tokenkeeper.ErrorCode(err), ch.stderrTail())
			case tc.reconnect && !strings.Contains(err.Error(), lost):
				t.Fatalf("Token after the restart: %v; the reason does not say %q", err, lost)
			case !tc.reconnect && err != nil:
				t.Fatalf("Token after the restart: %v%s", err, ch.stderrTail())
			case !tc.reconnect:
				if got := e.api(tok.Value); got != http.StatusOK {
					t.Fatalf("API with the restarted keeper's token: status %d", got)
				}
			}
			if tc.committed {
				// The token the dead child committed, not a new one.
				stored, err := keeper.LoadToken(t.Context(), k, conn)
				if err != nil || !stored.Value.Equal(tok.Value) {
					t.Fatalf("the restarted keeper's token is not the one the child committed (%v)", err)
				}
			}
			// Later calls, in this keeper and in yet another, send nothing.
			for _, kk := range []*keeper.Keeper{k, e.newKeeper(kcfg)} {
				if _, err := e.token(kk, conn); (tokenkeeper.ErrorCode(err) == tokenkeeper.CodeReconnectRequired) != tc.reconnect {
					t.Fatalf("a later Token: %v", err)
				}
			}

			rec := e.record(conn)
			if !rec.Pending.IsZero() {
				t.Errorf("a marker is left: %+v", rec.Pending)
			}
			if tc.reconnect {
				if rec.State != tokenkeeper.StateReconnectRequired || !strings.Contains(rec.LastError, lost) {
					t.Errorf("record: state %s, last error %q; want reconnect_required saying %q", rec.State, rec.LastError, lost)
				}
			} else if rec.State != tokenkeeper.StateActive || rec.LastError != "" {
				t.Errorf("record: state %s, last error %q; want active", rec.State, rec.LastError)
			}
			if n := len(e.logLines(unknownLog)); (n > 0) != tc.unknown {
				t.Errorf("the restarted keeper logged %d times that an outcome was unknown; want it to (%v) only after a marker", n, tc.unknown)
			}
			rep := e.srv.Report()
			if diff := cmp.Diff(tc.refreshes, rep.Counters["refresh_token"]); diff != "" {
				t.Errorf("refresh outcomes at the provider (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.violations, e.violations()); diff != "" {
				t.Errorf("violations (-want +got):\n%s\nreport: %+v", diff, rep.Violations)
			}
			if t.Failed() {
				t.Logf("restarted keeper log:\n%s%s", e.logs.String(), ch.stderrTail())
			}
		})
	}
}

// tokenFront serves e's emulator on a second listener and counts the token
// requests it has received in full, so that a test knows when the emulator
// holds one.
type tokenFront struct {
	url           string
	tokenRequests atomic.Int64
}

func newTokenFront(t testing.TB, e *env) *tokenFront {
	f := &tokenFront{}
	h := e.srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, fmt.Sprintf("read the body: %v", err), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			f.tokenRequests.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	// Runs before ts.Close: cut held requests short rather than wait.
	t.Cleanup(e.srv.Emulator.Close)
	f.url = ts.URL
	return f
}

// childCrash calls Token once; its hook stops it at cfg.Step, where the
// parent kills it.
func childCrash(cfg childConfig, k *keeper.Keeper, out *childOut, cmds <-chan string) int {
	go func() {
		for range cmds {
		}
		os.Exit(2) // the parent has gone
	}()
	out.line("READY")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Token(ctx, cfg.Conn); err != nil {
		out.line("RESULT error %s %s", tokenkeeper.ErrorCode(err), strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		out.line("RESULT ok")
	}
	<-make(chan struct{}) // wait to be killed
	return 0
}

// leaseHookStore calls acquired after every successful AcquireLease: the
// point after the lease is taken and before the marker is written, for
// which the keeper has no hook.
type leaseHookStore struct {
	tokenkeeper.Store
	acquired func()
}

func (s *leaseHookStore) AcquireLease(ctx context.Context, id tokenkeeper.ConnectionID, owner string, ttl time.Duration) (tokenkeeper.Lease, *tokenkeeper.Record, error) {
	l, rec, err := s.Store.AcquireLease(ctx, id, owner, ttl)
	if err == nil {
		s.acquired()
	}
	return l, rec, err
}
