package keeper_test

// Second-pass review tests: each demonstrates a defect in the refresh
// protocol as it stands after the first review's fixes. They fail on the
// code as reviewed.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// The commit now retries "for as long as the process lives", but it retries
// every error that is not a conflict, CodeNotFound included: if the
// connection is deleted while its refresh is in flight, commit loops on
// writeLeased -> not_found (sleep, retry) forever and never reaches the
// re-read that would tell it the row is gone. The flight never ends: every
// later Token for the id joins it and hangs until its own ctx, the flight
// holds one of the MaxConcurrentRefreshes slots (here the only one, so no
// other connection can refresh), and Close waits the full 2 x LeaseTTL.
func TestReview2_CommitStopsWhenTheConnectionIsDeleted(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	e.connect("globex")
	var deleted bool
	fs := &faultyStore{Store: e.store}
	fs.UpdateLeasedFunc = func(ctx context.Context, rec *tokenkeeper.Record, expect int64, lease tokenkeeper.Lease) error {
		// The commit is the leased write that clears the marker and holds
		// a token: the operator deletes the connection just before it.
		if !deleted && rec.ID == "acme" && rec.Pending.IsZero() && !rec.Tokens.AccessToken.IsZero() {
			deleted = true
			if err := e.store.DeleteConnection(ctx, "acme", 0); err != nil {
				t.Error(err)
			}
		}
		return e.store.UpdateLeased(ctx, rec, expect, lease)
	}
	cfg := fastConfig() // LeaseTTL 3s
	cfg.MaxConcurrentRefreshes = 1
	k := e.keeperOverStore(fs, cfg)
	e.expire("acme")
	e.expire("globex")

	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := k.Token(ctx, "acme")
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("Token #%d after the connection was deleted mid-refresh: code %q, %v; want not_found (the flight is stuck retrying the commit into a deleted row)",
				i+1, tokenkeeper.ErrorCode(err), err)
		}
	}
	if l := e.logLines("refresh: commit failed; retrying with the new pair held in memory"); len(l) > 0 {
		t.Logf("commit: %d failures logged; the first: %v", len(l), l[0]["error"])
	}
	// The stuck flight holds the only refresh slot: another connection
	// cannot refresh at all.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := k.Token(ctx, "globex")
	cancel()
	if err != nil {
		t.Errorf("Token for another connection: code %q, %v (the deleted connection's flight holds the refresh slot)", tokenkeeper.ErrorCode(err), err)
	}
	start := time.Now()
	_ = k.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %s: it waited for a flight that retries a commit into a deleted row", took.Round(time.Millisecond))
	}
}

// The cache's generation floor assumes generations only grow per id, but
// DeleteConnection + CreateConnection (the Store contract's delete, then a
// connect flow for the same id) starts the id again at generation 1.
// Connect's publish(c, 1) is then ignored (1 < floor), and Token keeps
// serving the deleted grant's access token (possibly another company's)
// until its promise ends; every later publish for the new grant is ignored
// too, until its generation passes the old floor.
func TestReview2_RecreatedConnectionIsServedItsOwnToken(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.k.Refresh(ctx, "acme"); err != nil { // the floor is now 3
		t.Fatal(err)
	}
	old := e.mustToken("acme")
	floor := e.record("acme").Generation

	if err := e.store.DeleteConnection(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	g := e.grant("acme", "")
	if _, err := e.k.Connect(ctx, g); err != nil {
		t.Fatal(err)
	}
	tok := e.mustToken("acme")
	switch {
	case tok.Value.Equal(old.Value):
		t.Fatalf("Token after the connection was deleted and connected again returned the deleted grant's token (the cache's floor is %d; the new record is at generation %d)", floor, e.record("acme").Generation)
	case !tok.Value.Equal(g.Tokens.AccessToken):
		t.Fatal("Token did not return the new grant's access token")
	}
}

// A marker left by a process that died (or whose Close gave up) during an
// urgent refresh (an Invalidate after a 401, or an operator's Refresh),
// i.e. before its token's promise ended, is read by ensure as a cooldown:
// cooling is true for any marker without a live lease, and NextRefreshAt is
// still the old plan (promise + grace, minutes away). The keeper neither
// serves the token (it may be dead) nor makes the one more attempt the
// protocol calls for: every Token fails with "refreshing is failing ()"
// until NextRefreshAt, for up to the whole promise.
func TestReview2_DeadMarkerBeforePromiseEndIsResolved(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	ctx := context.Background()

	// The dead process: lease, marker, crash (before sending).
	lease, rec, err := e.store.AcquireLease(ctx, "acme", "dead-keeper", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	gen := rec.Generation
	rec.Pending = tokenkeeper.Pending{Since: e.srv.Now().UTC().Truncate(time.Microsecond), Owner: "dead-keeper"}
	rec.Generation = gen + 1
	if err := e.store.UpdateLeased(ctx, rec, gen, lease); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // its lease expires

	other := e.newKeeper(fastConfig()) // the restarted (or another) process
	tok, err := e.token(other, "acme")
	if err != nil {
		t.Fatalf("Token with a dead marker left before the promise ended: code %q: %v; want one more attempt with the stored refresh token (nothing was sent)",
			tokenkeeper.ErrorCode(err), err)
	}
	if e.api(tok.Value) != 200 {
		t.Fatal("the API refused the token")
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("emulator violations: %v", v)
	}
}

// Config.FailureCooldown says the cooldown "is capped by the token's
// expiry", and settleFailed caps the extended promise at Expiry - 2 x grace,
// but NextRefreshAt is set to now + cooldown uncapped. A transient failure
// close to the provider's expiry therefore leaves a gap after the token
// expires in which Token fails with "refreshing is failing" and no refresh
// is tried, though the provider has recovered.
func TestReview2_CooldownIsCappedByTheTokenExpiry(t *testing.T) {
	e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) {
		c.FailureCooldown = 30 * time.Second
		c.MaxAttempts = 1
	})
	e.connect("acme")
	old := e.mustToken("acme")
	expiry := e.record("acme").Tokens.Expiry
	if _, err := e.srv.Advance(expiry.Add(-5 * time.Second).Sub(e.srv.Now())); err != nil {
		t.Fatal(err)
	}
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault429}}})
	// The degraded connection serves its live token, promised to just
	// before the provider's expiry.
	if tok, err := e.token(e.k, "acme"); err != nil || !tok.Value.Equal(old.Value) {
		t.Fatalf("Token after a 429 five seconds before expiry: %v, want the live old token", err)
	}
	rec := e.record("acme")
	if _, err := e.srv.Advance(expiry.Add(time.Second).Sub(e.srv.Now())); err != nil { // the old token is now expired
		t.Fatal(err)
	}
	tok, err := e.token(e.k, "acme")
	if err != nil {
		t.Fatalf("Token a second after the old token expired: code %q: %v (NextRefreshAt %s is %s after the expiry, beyond the documented cap)",
			tokenkeeper.ErrorCode(err), err, rec.NextRefreshAt.Format(time.RFC3339), rec.NextRefreshAt.Sub(expiry))
	}
	if e.api(tok.Value) != 200 {
		t.Fatal("the API refused the token")
	}
}

// The commit retries every non-conflict store error forever, permanent ones
// included. A provider that answers the refresh with a form-encoded body (x/oauth2
// accepts application/x-www-form-urlencoded and text/plain) can carry a
// scope that is not UTF-8 ("%FF"); commit copies it into Tokens.Scope
// unchecked (errorCode is cleaned for exactly this reason, the scope is
// not), the store refuses it with CodeInvalid on every try, and the flight
// never ends: it keeps renewing its lease, so no process can refresh the
// connection again, and every Token hangs until its ctx.
func TestReview2_UnstorableScopeDoesNotStallTheCommit(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = io.WriteString(w, "access_token=new-access&refresh_token=new-refresh&token_type=Bearer&expires_in=900&scope=users%3Aread%FF")
	}))
	defer fake.Close()
	cfg := fastConfig()
	cfg.Store, cfg.Sealer = e.store, e.ring
	cfg.Provider = tokenkeeper.CustomProvider(fake.URL+"/oauth/authorize", fake.URL+"/oauth/token", e.srv.APIURL)
	cfg.ClientID, cfg.ClientSecret = e.client.ID, tokenkeeper.NewSecret(e.client.Secret)
	cfg.Now = e.srv.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	k, err := keeper.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	e.expire("acme")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tok, err := k.Token(ctx, "acme")
	if err != nil {
		if l := e.logLines("refresh: commit failed; retrying with the new pair held in memory"); len(l) > 0 {
			t.Logf("commit: %d failures logged; the first: %v", len(l), l[0]["error"])
		}
		t.Fatalf("Token after a refresh the provider answered (with a scope that is not UTF-8): code %q: %v; the commit retries a store error that can never succeed",
			tokenkeeper.ErrorCode(err), err)
	}
	if tok.Value.Reveal() != "new-access" {
		t.Fatal("Token did not return the refreshed access token")
	}
}

// A refresh answer whose scope holds NUL or invalid UTF-8 (which both
// stores refuse) is committed with the scope cleaned: the rotated pair is
// stored, not lost.
func TestKeeper_ProviderScopeIsCleaned(t *testing.T) {
	for _, tc := range []struct{ name, ctype, body, want string }{
		{"JSON", "application/json", `{"access_token":"new-access","refresh_token":"new-refresh","token_type":"Bearer","expires_in":900,"scope":"users:read\u0000x"}`, "users:readx"},
		{"Form", "application/x-www-form-urlencoded", "access_token=new-access&refresh_token=new-refresh&token_type=Bearer&expires_in=900&scope=users%3Aread%00x%FF", "users:readx\uFFFD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.connect("acme")
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tc.ctype)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer fake.Close()
			cfg := fastConfig()
			cfg.Store, cfg.Sealer = e.store, e.ring
			cfg.Provider = tokenkeeper.CustomProvider(fake.URL+"/oauth/authorize", fake.URL+"/oauth/token", e.srv.APIURL)
			cfg.ClientID, cfg.ClientSecret = e.client.ID, tokenkeeper.NewSecret(e.client.Secret)
			cfg.Now = e.srv.Now
			cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
			k, err := keeper.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			e.expire("acme")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tok, err := k.Token(ctx, "acme")
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.Value.Reveal() != "new-access" {
				t.Fatal("Token did not return the refreshed access token")
			}
			rec := e.record("acme")
			if rec.Tokens.Scope != tc.want || !rec.Pending.IsZero() {
				t.Errorf("stored scope %q, pending %+v; want %q, none", rec.Tokens.Scope, rec.Pending, tc.want)
			}
			// The stored pair is the new one: another keeper reads it.
			got, err := keeper.LoadToken(ctx, e.k, "acme")
			if err != nil || got.Value.Reveal() != "new-access" {
				t.Errorf("stored access token: err %v; want the refreshed one", err)
			}
		})
	}
}
