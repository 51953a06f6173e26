package keeper_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// refusedAgainMsg is the warning logged once per RejectCooldown window.
const refusedAgainMsg = "refresh: the provider refuses the token just issued in place of a refused one; a refresh cannot fix that, so refused tokens cause no refresh until the cooldown ends"

// refusingUpstream is an API that refuses every token as invalid_token, as
// a provider may for a permission problem: no refresh can cure it.
func refusingUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="not allowed here"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_token"}`)
	}))
	t.Cleanup(up.Close)
	return up
}

// getStatus sends GET url through c and returns the status; a transport
// error fails the test.
func getStatus(t testing.TB, c *http.Client, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// getMany sends n GETs of url through c, one after another or all at once,
// and returns their statuses.
func getMany(t testing.TB, c *http.Client, url string, n int, concurrent bool) []int {
	t.Helper()
	statuses := make([]int, n)
	if !concurrent {
		for i := range statuses {
			statuses[i] = getStatus(t, c, url)
		}
		return statuses
	}
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() { statuses[i] = getStatus(t, c, url) })
	}
	wg.Wait()
	return statuses
}

// invalidate calls Invalidate with a test deadline.
func invalidate(t testing.TB, k *keeper.Keeper, stale tokenkeeper.Secret) tokenkeeper.AccessToken {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := k.Invalidate(ctx, "acme", stale)
	if err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	return tok
}

// suppressed returns tokenkeeper_refreshes_suppressed_total.
func suppressed(t testing.TB, reg prometheus.Gatherer) float64 {
	t.Helper()
	return samples(t, reg, "tokenkeeper_refreshes_suppressed_total")[""]
}

// pastCooldown moves the keeper's clock (the emulator's) past the default
// RejectCooldown; the token's promise (minutes) still holds.
func pastCooldown(t testing.TB, e *env) {
	t.Helper()
	if _, err := e.srv.Advance(31 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// An upstream that refuses every token made every call through the
// Transport cost a refresh: 20 calls, 20 refreshes, each rotating the
// refresh token and breaking the promise of the tokens handed out. Now
// the first refusal refreshes, the refusals of the token issued for it do
// not (within RejectCooldown), and after the cooldown one more refusal
// refreshes once. "Concurrent" sends all but the first call of each
// window at once, so that they report the guarded token together.
func TestKeeper_Transport_RefusedAgain(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		name := "Sequential"
		if concurrent {
			name = "Concurrent"
		}
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			e := newEnv(t, withRegistry(reg))
			e.connect("acme")
			first := e.mustToken("acme")
			up := refusingUpstream(t)
			rec := &authRecorder{}
			client := e.k.Client("acme", rec)
			const calls = 20
			all401 := func(when string, statuses []int) {
				t.Helper()
				for i, s := range statuses {
					if s != http.StatusUnauthorized {
						t.Errorf("%s, call %d: status %d, want the upstream's 401", when, i, s)
					}
				}
			}

			all401("first window", getMany(t, client, up.URL, 1, false))
			all401("first window", getMany(t, client, up.URL, calls-1, concurrent))
			if n := e.refreshes("ok"); n != 1 {
				t.Fatalf("%d calls to an upstream that refuses every token made %d refreshes, want 1", calls, n)
			}
			second := e.mustToken("acme")
			if second.Value.Equal(first.Value) {
				t.Fatal("the first refusal did not refresh")
			}
			if got := e.api(second.Value); got != http.StatusOK {
				t.Fatalf("the kept token got %d from the emulator, want 200: its promise was broken", got)
			}
			if !concurrent {
				// The first call: the refused token, then one retry with the
				// new one. Every later call: the new one, no retry.
				want := []string{"Bearer " + first.Value.Reveal()}
				for range calls {
					want = append(want, "Bearer "+second.Value.Reveal())
				}
				if got := rec.headers(); !cmp.Equal(got, want) {
					t.Fatalf("%d requests sent, want %d: one retry for the first call only, and never the refused token twice (values redacted)", len(got), len(want))
				}
				if n := suppressed(t, reg); n != calls-1 {
					t.Errorf("tokenkeeper_refreshes_suppressed_total = %v, want %d", n, calls-1)
				}
			} else if n := suppressed(t, reg); n < 1 || n > calls-1 {
				t.Errorf("tokenkeeper_refreshes_suppressed_total = %v, want 1 to %d (one per flight)", n, calls-1)
			}
			if n := len(e.logLines(refusedAgainMsg)); n != 1 {
				t.Errorf("%d warnings in the first window, want 1", n)
			}

			// After the cooldown, the refusals refresh once more, then are
			// guarded again.
			pastCooldown(t, e)
			all401("after the cooldown", getMany(t, client, up.URL, calls, concurrent))
			if n := e.refreshes("ok"); n != 2 {
				t.Fatalf("after the cooldown, %d refreshes in all, want 2", n)
			}
			third := e.mustToken("acme")
			if third.Value.Equal(second.Value) {
				t.Fatal("the refusal after the cooldown did not refresh")
			}
			all401("second window", getMany(t, client, up.URL, calls, concurrent))
			if n := e.refreshes("ok"); n != 2 {
				t.Fatalf("in the second window, %d refreshes in all, want 2", n)
			}
			if !concurrent {
				if n := suppressed(t, reg); n != 3*calls-2 {
					t.Errorf("tokenkeeper_refreshes_suppressed_total = %v, want %d", n, 3*calls-2)
				}
			}
			lines := e.logLines(refusedAgainMsg)
			if n := len(lines); n != 2 {
				t.Errorf("%d warnings in two windows, want one per window", n)
			}
			for _, l := range lines {
				if l["level"] != "WARN" || l["connection"] != "acme" {
					t.Errorf("warning %v: want level WARN for connection acme", l)
				}
			}
			logs := e.logs.String()
			for _, tok := range []tokenkeeper.AccessToken{first, second, third} {
				if strings.Contains(logs, tok.Value.Reveal()) {
					t.Fatal("a token appears in the log")
				}
			}
			if v := e.violations(); len(v) != 0 {
				t.Fatalf("emulator violations: %v", v)
			}
		})
	}
}

func TestKeeper_Invalidate_RejectCooldown(t *testing.T) {
	t.Run("RepeatedReports", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		fresh := invalidate(t, e.k, old.Value) // the first refusal refreshes
		if fresh.Value.Equal(old.Value) || e.refreshes("ok") != 1 {
			t.Fatalf("the first Invalidate: same token %v, %d refreshes; want a new token and 1", fresh.Value.Equal(old.Value), e.refreshes("ok"))
		}
		for i := range 10 {
			got := invalidate(t, e.k, fresh.Value)
			if !got.Value.Equal(fresh.Value) || !got.ExpiresAt.Equal(fresh.ExpiresAt) {
				t.Fatalf("report %d of the token issued for the first: a different token or promise, want the same", i)
			}
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("10 reports of the token issued for a refusal made %d more refreshes, want 0", n-1)
		}
		if got := e.api(fresh.Value); got != http.StatusOK {
			t.Fatalf("the kept token got %d from the emulator, want 200", got)
		}
		// A superseded token still gets the current one.
		if got := invalidate(t, e.k, old.Value); !got.Value.Equal(fresh.Value) {
			t.Fatal("Invalidate of the superseded token did not return the current one")
		}

		pastCooldown(t, e)
		next := invalidate(t, e.k, fresh.Value)
		if next.Value.Equal(fresh.Value) || e.refreshes("ok") != 2 {
			t.Fatalf("after the cooldown: same token %v, %d refreshes; want a new token and 2", next.Value.Equal(fresh.Value), e.refreshes("ok"))
		}
		if got := invalidate(t, e.k, next.Value); !got.Value.Equal(next.Value) || e.refreshes("ok") != 2 {
			t.Fatal("the token issued after the cooldown is not guarded in turn")
		}
	})

	t.Run("Disabled", func(t *testing.T) {
		e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.RejectCooldown = -1 })
		e.connect("acme")
		up := refusingUpstream(t)
		client := e.k.Client("acme", nil)
		getMany(t, client, up.URL, 5, false)
		if n := e.refreshes("ok"); n != 5 {
			t.Fatalf("with the guard disabled, 5 refused calls made %d refreshes, want 5", n)
		}
	})

	// Within the cooldown, another process refreshes (an operator): the next
	// 401 adopts its token from the store without refreshing and retries,
	// and that token is guarded too, so replicas do not take turns.
	t.Run("AdoptsAnotherProcessRefresh", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		up := refusingUpstream(t)
		rec := &authRecorder{}
		client := e.k.Client("acme", rec)
		getMany(t, client, up.URL, 2, false)
		kept := e.mustToken("acme")
		k2 := e.newKeeper(fastConfig())
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		other, err := k2.Refresh(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		before := len(rec.headers())
		if got := getIntrospect(t, e, client); got != http.StatusOK {
			t.Fatalf("API status %d, want 200 after adopting the other process's token", got)
		}
		want := []string{"Bearer " + kept.Value.Reveal(), "Bearer " + other.Value.Reveal()}
		if got := rec.headers()[before:]; !cmp.Equal(got, want) {
			t.Fatalf("%d requests sent, want 2: the superseded token, then the other process's (values redacted)", len(got))
		}
		if n := e.refreshes("ok"); n != 2 {
			t.Fatalf("%d refreshes, want 2 (this keeper's first, the other process's)", n)
		}
		getMany(t, client, up.URL, 3, false)
		if n := e.refreshes("ok"); n != 2 {
			t.Fatalf("refusals of the adopted token made %d refreshes, want none", n-2)
		}
	})

	// A refresh in flight elsewhere (its marker in the store) may be what
	// killed the token: the guard does not answer for it, Invalidate waits
	// for that refresh and returns its token.
	t.Run("WaitsForARefreshInFlight", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		up := refusingUpstream(t)
		getMany(t, e.k.Client("acme", nil), up.URL, 1, false)
		kept := e.mustToken("acme")
		e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{
			Min: emulator.Duration(500 * time.Millisecond), Max: emulator.Duration(500 * time.Millisecond)}}})
		k2 := e.newKeeper(fastConfig())
		forced := make(chan tokenkeeper.AccessToken, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tok, err := k2.Refresh(ctx, "acme")
			if err != nil {
				t.Errorf("Refresh in the other process: %v", err)
			}
			forced <- tok
		}()
		waitFor(t, "the other process's marker", func() bool { return !e.record("acme").Pending.IsZero() })
		got := invalidate(t, e.k, kept.Value)
		want := <-forced
		if got.Value.Equal(kept.Value) || !got.Value.Equal(want.Value) {
			t.Fatal("Invalidate during another process's refresh did not return that refresh's token")
		}
		if n := e.refreshes("ok"); n != 2 {
			t.Fatalf("%d refreshes, want 2", n)
		}
	})

	// The cost of the guard: a revocation within the cooldown shows as the
	// provider's 401 until the cooldown ends, then as reconnect_required.
	t.Run("RevocationWithinTheCooldown", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		up := refusingUpstream(t)
		client := e.k.Client("acme", nil)
		getMany(t, client, up.URL, 1, false)
		auths := e.srv.Report().Authorisations
		if err := e.srv.Revoke(auths[len(auths)-1].ID); err != nil {
			t.Fatal(err)
		}
		if got := getIntrospect(t, e, client); got != http.StatusUnauthorized {
			t.Fatalf("within the cooldown: status %d, want the provider's 401", got)
		}
		pastCooldown(t, e)
		_, err := client.Get(e.srv.APIURL + "/v1/introspect")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("after the cooldown: code %q (%v), want reconnect_required", code, err)
		}
	})

	// The guard is keyed on the token issued for a refusal, not on time: a
	// token from a normal renewal within the window gets its first refusal's
	// refresh, and a revocation shows as reconnect_required on the first call.
	t.Run("FirstRefusalOfARenewedToken", func(t *testing.T) {
		e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.RejectCooldown = time.Hour })
		e.connect("acme")
		up := refusingUpstream(t)
		client := e.k.Client("acme", nil)
		getMany(t, client, up.URL, 2, false) // one refresh, then a kept token
		e.expire("acme")
		if got := getIntrospect(t, e, client); got != http.StatusOK {
			t.Fatalf("after the promise ended: status %d, want 200", got)
		}
		if n := e.refreshes("ok"); n != 2 {
			t.Fatalf("%d refreshes, want 2 (the refusal's, the renewal's)", n)
		}
		auths := e.srv.Report().Authorisations
		if err := e.srv.Revoke(auths[len(auths)-1].ID); err != nil {
			t.Fatal(err)
		}
		_, err := client.Get(e.srv.APIURL + "/v1/introspect")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("code %q (%v); want reconnect_required on the first call after the revocation", code, err)
		}
	})

	// An operator's forced refresh is not bounded by the guard.
	t.Run("RefreshUnaffected", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		up := refusingUpstream(t)
		getMany(t, e.k.Client("acme", nil), up.URL, 3, false)
		kept := e.mustToken("acme")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tok, err := e.k.Refresh(ctx, "acme")
		if err != nil || tok.Value.Equal(kept.Value) || e.refreshes("ok") != 2 {
			t.Fatalf("forced refresh within the cooldown: %v, same token %v, %d refreshes; want a new token and 2", err, tok.Value.Equal(kept.Value), e.refreshes("ok"))
		}
	})
}
