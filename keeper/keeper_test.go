package keeper_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

func TestKeeper_Token(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		tok := e.mustToken("acme")
		if got := e.api(tok.Value); got != 200 {
			t.Fatalf("API status %d, want 200", got)
		}
		again := e.mustToken("acme")
		if !again.Value.Equal(tok.Value) || !again.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Fatal("a second Token within the promise returned another token")
		}
		if n := e.refreshes("ok"); n != 0 {
			t.Fatalf("%d refreshes, want 0", n)
		}
		// The promise is about 80% of the 15 minute lifetime.
		if life := tok.ExpiresAt.Sub(e.srv.Now()); life < 10*time.Minute || life > 13*time.Minute {
			t.Fatalf("promise ends in %s, want about 12 minutes", life)
		}
	})
	t.Run("RefreshAfterPromise", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		e.expire("acme")
		tok := e.mustToken("acme")
		if tok.Value.Equal(old.Value) {
			t.Fatal("Token after the promise returned the old token")
		}
		if got := e.api(tok.Value); got != 200 {
			t.Fatalf("API status %d with the new token", got)
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1", n)
		}
		rec := e.record("acme")
		if rec.Generation < 2 || !rec.Pending.IsZero() || rec.LastRefreshAt.IsZero() {
			t.Fatalf("record after refresh: generation %d, pending %+v, last refresh %v", rec.Generation, rec.Pending, rec.LastRefreshAt)
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})
	t.Run("SingleFlight", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.expire("acme")
		var wg sync.WaitGroup
		got := make([]tokenkeeper.AccessToken, 100)
		for i := range got {
			wg.Go(func() {
				tok, err := e.token(e.k, "acme")
				if err != nil {
					t.Error(err)
				}
				got[i] = tok
			})
		}
		wg.Wait()
		for _, g := range got[1:] {
			if !g.Value.Equal(got[0].Value) {
				t.Fatal("waiters got different tokens")
			}
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes for 100 waiters, want 1", n)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.token(e.k, "nobody")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeNotFound {
			t.Fatalf("code %q (%v), want not_found", code, err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.token(e.k, "bad id/../x")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInvalid {
			t.Fatalf("code %q (%v), want invalid", code, err)
		}
	})
	t.Run("CancelledCallerRefreshCompletes", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(300 * time.Millisecond), Max: emulator.Duration(300 * time.Millisecond)}}})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := e.k.Token(ctx, "acme"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Token with a short deadline: %v, want the context's error", err)
		}
		before := e.record("acme").Generation
		waitFor(t, "the abandoned refresh to commit", func() bool {
			return e.refreshes("ok") == 1 && e.record("acme").Pending.IsZero() && e.record("acme").Generation > before
		})
		e.faults(nil)
		tok := e.mustToken("acme")
		if e.api(tok.Value) != 200 || e.refreshes("ok") != 1 {
			t.Fatalf("after the cancelled caller: API or refresh count wrong (%d refreshes)", e.refreshes("ok"))
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})
}

func TestKeeper_Token_Faults(t *testing.T) {
	t.Run("InvalidGrant", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		auth := e.srv.Report().Authorisations[0].ID
		if err := e.srv.Revoke(auth); err != nil {
			t.Fatal(err)
		}
		e.expire("acme")
		_, err := e.token(e.k, "acme")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("code %q (%v), want reconnect_required", code, err)
		}
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("the RetrieveError is not in the chain: %v", err)
		}
		// Waiters fail fast, with no further requests.
		for range 5 {
			if _, err := e.token(e.k, "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
				t.Fatalf("later Token: %v", err)
			}
		}
		if n := e.refreshes("invalid_grant"); n != 1 {
			t.Fatalf("%d invalid_grant answers, want exactly 1 (no retries)", n)
		}
		rec := e.record("acme")
		if rec.State != tokenkeeper.StateReconnectRequired || !rec.Tokens.AccessToken.IsZero() || !rec.Tokens.RefreshToken.IsZero() {
			t.Fatalf("record: state %s, tokens wiped %v", rec.State, rec.Tokens.RefreshToken.IsZero())
		}
		if _, ok := e.events.last(tokenkeeper.EventReconnectRequired); !ok {
			t.Fatalf("no reconnect_required event: %v", e.events.types())
		}
		// A reconnect restores the connection, keeping its metadata.
		if err := e.k.SetMetadata(context.Background(), "acme", map[string]string{"tenant": "t1"}); err != nil {
			t.Fatal(err)
		}
		e.connect("acme")
		tok := e.mustToken("acme")
		if e.api(tok.Value) != 200 {
			t.Fatal("API refused the reconnected token")
		}
		rec = e.record("acme")
		if rec.State != tokenkeeper.StateActive || rec.Metadata["tenant"] != "t1" || rec.LastError != "" {
			t.Fatalf("after reconnect: state %s, metadata %v, last error %q", rec.State, rec.Metadata, rec.LastError)
		}
	})
	for _, fault := range []string{emulator.FaultDropAfterCommit, emulator.FaultGarbleAfterCommit} {
		t.Run("LostResponse/"+fault, func(t *testing.T) {
			e := newEnv(t)
			e.connect("acme")
			e.expire("acme")
			e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{fault}}})
			_, err := e.token(e.k, "acme")
			if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
				t.Fatalf("code %q (%v), want reconnect_required", code, err)
			}
			if !strings.Contains(err.Error(), "refresh response lost") {
				t.Fatalf("the reason does not say the response was lost: %v", err)
			}
			// Exactly one more attempt, then nothing.
			_, _ = e.token(e.k, "acme")
			if ok, dead := e.refreshes("ok"), e.refreshes("invalid_grant"); ok != 1 || dead != 1 {
				t.Fatalf("refresh outcomes ok=%d invalid_grant=%d, want 1 and 1", ok, dead)
			}
			if rec := e.record("acme"); !strings.Contains(rec.LastError, "refresh response lost") {
				t.Fatalf("recorded reason %q", rec.LastError)
			}
			for _, v := range e.srv.Report().Violations {
				if !v.LostResponse {
					t.Fatalf("a violation the client is to blame for: %+v", v)
				}
			}
		})
	}
	t.Run("Retry503AfterDelay", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{"error_503"}, RetryAfter: emulator.Duration(time.Second)}})
		start := time.Now()
		tok := e.mustToken("acme")
		if took := time.Since(start); took < time.Second {
			t.Fatalf("retried after %s; Retry-After said 1s", took)
		}
		if tok.Value.Equal(old.Value) || e.api(tok.Value) != 200 {
			t.Fatal("no working new token after the 503")
		}
		if v := e.violations(); len(v) != 0 {
			t.Fatalf("violations: %v", v)
		}
	})
	t.Run("ServerErrorThenInvalidGrantSaysUnknown", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{"error_500_after_commit"}}})
		_, err := e.token(e.k, "acme")
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired || !strings.Contains(err.Error(), "outcome was unknown") {
			t.Fatalf("after a 500 that had rotated: %v", err)
		}
	})
	t.Run("InvalidClientKeepsConnections", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.connect("globex")
		old := e.mustToken("acme")
		e.expire("acme")
		bad := e.client
		bad.Secret = "rotated-secret"
		if err := e.srv.AddClient(bad); err != nil {
			t.Fatal(err)
		}
		// The old token is alive: the degraded connection serves it.
		if tok, err := e.token(e.k, "acme"); err != nil || !tok.Value.Equal(old.Value) {
			t.Fatalf("Token after invalid_client: %v, want the live old token", err)
		}
		if rec := e.record("acme"); !rec.Degraded() || !strings.Contains(rec.LastError, "client credentials") {
			t.Fatalf("record: degraded %v, last error %q", rec.Degraded(), rec.LastError)
		}
		if _, ok := e.events.last(tokenkeeper.EventClientRejected); !ok {
			t.Fatalf("no client_rejected alert: %v", e.events.types())
		}
		if len(e.logLines("ALERT: the provider rejects this integration's client credentials; refreshing is paused for every connection until they are fixed")) == 0 {
			t.Fatal("no alert in the log")
		}
		// Refreshing pauses for the whole client: globex sends nothing.
		e.expire("globex")
		before := e.srv.Report().Counters["refresh_token"]["invalid_client"]
		_, _ = e.token(e.k, "globex")
		if after := e.srv.Report().Counters["refresh_token"]["invalid_client"]; after != before {
			t.Fatalf("a refresh was sent while the client was rejected (%d -> %d)", before, after)
		}
		for _, id := range []tokenkeeper.ConnectionID{"acme", "globex"} {
			if rec := e.record(id); rec.State != tokenkeeper.StateActive || rec.Tokens.RefreshToken.IsZero() {
				t.Fatalf("%s: state %s; the connection was killed", id, rec.State)
			}
		}
		// Fixed credentials: after the cooldown, refreshing works again.
		if err := e.srv.AddClient(e.client); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "recovery after the credentials are fixed", func() bool {
			tok, err := e.token(e.k, "acme")
			return err == nil && !tok.Value.Equal(old.Value) && e.api(tok.Value) == 200
		})
		if _, ok := e.events.last(tokenkeeper.EventRecovered); !ok {
			t.Fatalf("no recovered event: %v", e.events.types())
		}
		if n := e.refreshes("invalid_grant"); n != 0 {
			t.Fatalf("%d invalid_grant", n)
		}
	})
	t.Run("OmitRefreshTokenKeepsStored", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultOmitRefreshToken}}})
		tok := e.mustToken("acme")
		if e.api(tok.Value) != 200 {
			t.Fatal("API refused the token")
		}
		if len(e.logLines("refresh: the response holds no new refresh token; keeping the stored one")) != 1 {
			t.Fatal("no warning about the missing refresh token")
		}
		e.expire("acme")
		tok = e.mustToken("acme")
		if e.api(tok.Value) != 200 || e.refreshes("ok") != 2 {
			t.Fatalf("the kept refresh token did not work: %d refreshes", e.refreshes("ok"))
		}
	})
	t.Run("TransientExhaustedDegradesAndRecovers", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		e.expire("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Error429: 1, RetryAfter: emulator.Duration(time.Second)}})
		// Within the token's life, a degraded connection serves the old token.
		tok, err := e.token(e.k, "acme")
		if err == nil && !tok.Value.Equal(old.Value) {
			t.Fatal("a new token while the endpoint refuses")
		}
		rec := e.record("acme")
		if !rec.Degraded() || rec.State != tokenkeeper.StateActive {
			t.Fatalf("record: degraded %v, state %s", rec.Degraded(), rec.State)
		}
		if n := e.srv.Report().Counters["refresh_token"]["fault:error_429"]; n < 1 || n > 4 {
			t.Fatalf("%d attempts; want between 1 and MaxAttempts", n)
		}
		tok = e.mustToken("acme")
		if !tok.Value.Equal(old.Value) || e.api(tok.Value) != 200 {
			t.Fatal("the degraded connection did not serve its live token")
		}
		e.faults(nil)
		waitFor(t, "recovery", func() bool {
			e.srv.Advance(50 * time.Millisecond)
			tok, err := e.token(e.k, "acme")
			return err == nil && !tok.Value.Equal(old.Value)
		})
		if got := e.events.types(); !cmp.Equal(got[len(got)-3:], []string{"degraded", "refreshed", "recovered"}) && !strings.Contains(strings.Join(got, ","), "degraded,refreshed,recovered") {
			t.Fatalf("events %v", got)
		}
	})
}

func TestKeeper_Invalidate(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	old := e.mustToken("acme")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tok, err := e.k.Invalidate(ctx, "acme", old.Value)
			if err != nil || tok.Value.Equal(old.Value) {
				t.Errorf("Invalidate: %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.refreshes("ok"); n != 1 {
		t.Fatalf("a storm of 50 Invalidate calls made %d refreshes, want 1", n)
	}
	// A token that is no longer current causes no refresh.
	ctx := context.Background()
	if _, err := e.k.Invalidate(ctx, "acme", old.Value); err != nil {
		t.Fatal(err)
	}
	if n := e.refreshes("ok"); n != 1 {
		t.Fatalf("Invalidate with a superseded token refreshed (%d)", n)
	}
}

func TestKeeper_Refresh_Forced(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	old := e.mustToken("acme")
	tok, err := e.k.Refresh(context.Background(), "acme")
	if err != nil || tok.Value.Equal(old.Value) || e.refreshes("ok") != 1 {
		t.Fatalf("forced refresh: %v, refreshes %d", err, e.refreshes("ok"))
	}
	if got := e.mustToken("acme"); !got.Value.Equal(tok.Value) {
		t.Fatal("Token after a forced refresh is not the new token")
	}
}

func TestKeeper_Disconnect(t *testing.T) {
	e := newEnv(t)
	e.connect("acme")
	e.mustToken("acme")
	if err := e.k.Disconnect(context.Background(), "acme", "customer left"); err != nil {
		t.Fatal(err)
	}
	_, err := e.token(e.k, "acme")
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
		t.Fatalf("Token after Disconnect: %v", err)
	}
	if rec := e.record("acme"); rec.State != tokenkeeper.StateDisconnected || !rec.Tokens.RefreshToken.IsZero() {
		t.Fatalf("record after Disconnect: %s", rec.State)
	}
	if _, ok := e.events.last(tokenkeeper.EventDisconnected); !ok {
		t.Fatal("no disconnected event")
	}
}

func TestNew_ErrInvalid(t *testing.T) {
	if _, err := keeper.New(keeper.Config{}); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
		t.Fatalf("New with nothing: %v", err)
	}
}

func TestKeeper_Close(t *testing.T) {
	t.Run("EndsWaitingFlights", func(t *testing.T) {
		e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.DrainGrace = time.Minute })
		e.connect("acme")
		e.expire("acme")
		errc := make(chan error, 1)
		go func() { _, err := e.token(e.k, "acme"); errc <- err }()
		time.Sleep(50 * time.Millisecond) // let the flight start waiting out the grace
		start := time.Now()
		if err := e.k.Close(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("Close took %s with a flight waiting for a one-minute grace", took)
		}
		if err := <-errc; tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
			t.Fatalf("the waiting caller got %v, want unavailable", err)
		}
		if n := e.refreshes("ok"); n != 0 {
			t.Fatalf("%d refreshes sent after Close", n)
		}
		if _, err := e.token(e.k, "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
			t.Fatalf("Token after Close: %v", err)
		}
	})
}

// An operator's forced refresh honours the provider's Retry-After: a
// degraded connection in its cooldown sends nothing.
func TestKeeper_Refresh_HonoursRetryAfter(t *testing.T) {
	e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.MaxRetryAfter = 500 * time.Millisecond })
	e.connect("acme")
	e.expire("acme")
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault429}, RetryAfter: emulator.Duration(5 * time.Second)}})
	if _, err := e.token(e.k, "acme"); err != nil {
		t.Fatalf("Token after a 429: %v, want the live old token", err)
	}
	before := e.srv.Report().Counters["refresh_token"]
	_, err := e.k.Refresh(context.Background(), "acme")
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable {
		t.Fatalf("forced refresh within Retry-After: %v, want unavailable", err)
	}
	if after := e.srv.Report().Counters["refresh_token"]; !cmp.Equal(before, after) {
		t.Fatalf("a request was sent within Retry-After: %v -> %v", before, after)
	}
	if v := e.violations(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}
