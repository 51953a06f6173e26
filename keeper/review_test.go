package keeper_test

// Review tests: each demonstrates a defect in the refresh protocol. They fail
// on the code as reviewed, and are meant to be committed with the fixes.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// reviewStore wraps a Store: it counts reads, and can hold one armed read
// after the record was read and before it is returned.
type reviewStore struct {
	tokenkeeper.Store
	reads atomic.Int64

	mu      sync.Mutex
	armed   bool
	read    chan struct{} // closed when the armed read has read the record
	release chan struct{} // the armed read returns once this is closed

	failCommits atomic.Bool // fail every leased write that clears the marker
}

func (s *reviewStore) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	s.reads.Add(1)
	rec, err := s.Store.GetConnection(ctx, id)
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		close(s.read)
		<-s.release
	}
	return rec, err
}

func (s *reviewStore) UpdateLeased(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
	if s.failCommits.Load() && rec.Pending.IsZero() && !rec.Tokens.AccessToken.IsZero() {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "injected: database is down")
	}
	return s.Store.UpdateLeased(ctx, rec, expect, lease)
}

// arm holds the next GetConnection after its read.
func (s *reviewStore) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = true
	s.read = make(chan struct{})
	s.release = make(chan struct{})
}

// A lost response (sent, no usable answer) must be followed by exactly one
// more attempt with the stored refresh token (issue 3, "Outcome unknown"),
// and transient failures must stop after MaxAttempts. The loop condition
// `attempt <= MaxAttempts || attempt == lostAt+1` in refreshLeased grants a
// new attempt after every lost one, and classLost skips the backoff: an
// endpoint that keeps dropping connections gets hammered, back to back,
// until the flight's deadline.
func TestReview_LostResponsesAreBounded(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	e.expire("acme")
	script := make([]string, 10)
	for i := range script {
		script[i] = emulator.FaultDropBefore
	}
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: script}})
	_, _ = e.token(e.k, "acme")
	c := e.srv.Report().Counters["refresh_token"]
	sent := c["fault:"+emulator.FaultDropBefore] + c["ok"] + c["invalid_grant"]
	// MaxAttempts is 4 (the default); "exactly one more attempt" after a
	// lost response would even mean 2.
	if sent > 4 {
		t.Fatalf("%d token requests in one refresh (%v), want at most MaxAttempts = 4: a lost response earns another attempt every time, with no backoff", sent, c)
	}
}

// Persist before use: "If the commit fails, keep the pair in memory and
// retry the commit; never drop it, and never present the old refresh token
// again." commit gives up after 2 x LeaseTTL + RefreshTimeout and drops the
// pair; the marker it leaves makes the next flight present the old refresh
// token, which (Pleo has no grace period) is reuse and kills the grant.
func TestReview_CommitFailureNeverDropsThePair(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	rs := &reviewStore{Store: e.store}
	cfg := fastConfig()
	cfg.RefreshTimeout = 300 * time.Millisecond
	cfg.LeaseTTL = time.Second // commit deadline: 2 x 1s + 300ms
	k := e.keeperOverStore(rs, cfg)
	e.expire("acme")

	rs.failCommits.Store(true) // the database goes down for longer than the old commit deadline
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := k.Token(ctx, "acme"); err == nil {
		t.Fatal("Token succeeded with the commit failing")
	}
	if n := e.refreshes("ok"); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	rs.failCommits.Store(false) // the database is back

	tok, err := e.token(k, "acme")
	if err != nil {
		t.Fatalf("Token after the store recovered: code %q: %v (the pair received earlier was dropped and the old refresh token presented again)", tokenkeeper.ErrorCode(err), err)
	}
	if e.api(tok.Value) != 200 {
		t.Fatal("the API refused the token")
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("emulator violations: %v", v)
	}
}

// After a transient failure the connection is degraded, its token's
// promise is extended, and a cooldown is set. An Invalidate of that token
// (a 401) then busy-loops: ensure sees the token is stale (urgent), but the
// cooldown branch returns the very same token with a nil error, and await
// goes round because it equals the stale one, starting a new flight each
// time, until ctx ends or the cooldown passes.
func TestReview_InvalidateDuringCooldownDoesNotSpin(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	rs := &reviewStore{Store: e.store}
	cfg := fastConfig()
	cfg.MaxAttempts = 1
	cfg.FailureCooldown = 5 * time.Second
	k := e.keeperOverStore(rs, cfg)
	old := e.mustToken("acme")
	e.expire("acme")
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault429}}})
	// A degraded connection serves its live token, with its promise
	// extended to the next try.
	if tok, err := e.token(k, "acme"); err != nil || !tok.Value.Equal(old.Value) {
		t.Fatalf("first refresh (429): %v, want the live old token", err)
	}

	reads := rs.reads.Load()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := k.Invalidate(ctx, "acme", old.Value)
	took := time.Since(start)
	n := rs.reads.Load() - reads
	if errors.Is(err, context.DeadlineExceeded) || took > 500*time.Millisecond || n > 10 {
		t.Fatalf("Invalidate during the cooldown: %v after %s, %d store reads (one flight each): it spins", err, took.Round(time.Millisecond), n)
	}
}

// Disconnect wipes the tokens and clears the cache, but a flight that read
// the record just before stores its token into the cache when it ends
// (fly: e.cur.Store(c)), after Disconnect returned. The hot path then
// serves the disconnected connection's token until its promise ends. The
// same race lets a reconnect's new token be replaced by the old grant's.
func TestReview_DisconnectIsNotUndoneByAFlight(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	rs := &reviewStore{Store: e.store}
	k := e.keeperOverStore(rs, fastConfig()) // a cold cache: Token reads the store

	rs.arm()
	done := make(chan error, 1)
	go func() {
		_, err := e.token(k, "acme")
		done <- err
	}()
	<-rs.read // the flight has read the active record
	if err := k.Disconnect(context.Background(), "acme", "customer left"); err != nil {
		t.Fatal(err)
	}
	close(rs.release)
	<-done // the call that was in flight may return the old token

	tok, err := e.token(k, "acme")
	if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
		t.Fatalf("Token after Disconnect returned: code %q, err %v, token set %v; want reconnect_required",
			code, err, !tok.Value.IsZero())
	}
}

// While another process refreshes urgently (an operator's Refresh or an
// Invalidate after a 401), the record carries its marker and a live lease,
// before the old promise's NextRefreshAt. Another process whose caller got
// a 401 calls Invalidate: ensure takes its cooldown branch ("a failed
// refresh set a cooldown", though nothing failed) and fails at once with
// "refreshing is failing ()", instead of waiting for the holder. The
// Transport then hands the caller the 401.
func TestReview_OtherProcessUrgentRefreshIsNotAFailure(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	old := e.mustToken("acme")
	e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{
		Min: emulator.Duration(time.Second), Max: emulator.Duration(time.Second)}}})
	forced := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := e.k.Refresh(ctx, "acme")
		forced <- err
	}()
	waitFor(t, "the marker of the forced refresh", func() bool { return !e.record("acme").Pending.IsZero() })

	// Another process whose caller got a 401 with the token being replaced.
	other := e.newKeeper(fastConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := other.Invalidate(ctx, "acme", old.Value)
	if err != nil {
		t.Errorf("Invalidate in another process during a forced refresh: code %q: %v", tokenkeeper.ErrorCode(err), err)
	} else if tok.Value.Equal(old.Value) {
		t.Error("Invalidate returned the stale token")
	}
	if err := <-forced; err != nil {
		t.Fatal(err)
	}
}

// A provider lifetime shorter than two drain graces makes plan() return
// ExpiresAt == sentAt: every token is born past its promise. await then
// discards each flight's token as "already due" and starts another refresh,
// one per drain grace, and Token never returns a token that is still valid
// at the provider.
func TestReview_ShortLifetimeDoesNotLoop(t *testing.T) {
	e := newEnv(t, func(c *keeper.Config, ec *emulator.Config) {
		if ec != nil {
			ec.AccessTokenTTL = 2 * time.Second
		}
		c.DrainGrace = 1500 * time.Millisecond
	})
	e.connect("acme")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.k.Token(ctx, "acme")
	if err != nil {
		t.Fatalf("Token with a 2s token lifetime and a 1.5s drain grace: %v after %d refreshes", err, e.refreshes("ok"))
	}
	if n := e.refreshes("ok"); n > 1 {
		t.Fatalf("%d refreshes for one Token call", n)
	}
}

// settleFailed (and settleDead) write their outcome once, fenced and
// compared on the generation. A metadata write (SetMetadata, SetSubject:
// no lease needed) landing between the marker and that write makes it fail
// with a conflict, which is only logged: the cooldown (here a Retry-After
// of 20s) is never recorded, and the marker stays. The next Token then
// refreshes at once, before Retry-After, and treats a 429 (nothing
// rotated) as an unknown outcome. mark and commit merge onto the fresh
// record in this case; the settle writes do not.
func TestReview_SettleSurvivesAMetadataWrite(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	var once atomic.Bool
	fs := &faultyStore{Store: e.store}
	fs.UpdateLeasedFunc = func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
		if rec.LastError != "" && !once.Swap(true) {
			if err := e.k.SetMetadata(ctx, "acme", map[string]string{"tenant": "t1"}); err != nil {
				t.Error(err)
			}
		}
		return e.store.UpdateLeased(ctx, rec, expect, lease)
	}
	k := e.keeperOverStore(fs, fastConfig())
	e.expire("acme")
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault429}, RetryAfter: emulator.Duration(20 * time.Second)}})
	if _, err := e.token(k, "acme"); err != nil {
		t.Fatalf("first Token: %v, want the live old token of the degraded connection", err)
	}
	rec := e.record("acme")
	if rec.LastError == "" || !rec.Degraded() || !rec.Pending.IsZero() {
		t.Errorf("the failure was not recorded: last error %q, degraded %v, pending %+v", rec.LastError, rec.Degraded(), rec.Pending)
	}
	_, _ = e.token(k, "acme") // within the Retry-After
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("emulator violations: %v", v)
	}
}
