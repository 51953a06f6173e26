package keeper_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// authRecorder is the base RoundTripper under a keeper's Transport: it
// records the Authorization header of each request it sends, and calls
// onSend (if set) as each request leaves, with that header, and onReturn
// (if set) when its response is back, before the keeper's Transport sees
// it.
type authRecorder struct {
	mu       sync.Mutex
	seen     []string
	onSend   func(auth string)
	onReturn func()
}

func (r *authRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	auth := req.Header.Get("Authorization")
	r.mu.Lock()
	r.seen = append(r.seen, auth)
	r.mu.Unlock()
	if r.onSend != nil {
		r.onSend(auth)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if r.onReturn != nil {
		r.onReturn()
	}
	return resp, err
}

func (r *authRecorder) headers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// apiCount returns the emulator's count of API calls with outcome ("ok",
// "invalid_token", ...).
func (e *env) apiCount(outcome string) int64 {
	return e.srv.Report().Counters[emulator.EndpointAPI][outcome]
}

// staleViolations counts stale_access_token violations.
func (e *env) staleViolations() int {
	return e.srv.Report().ViolationCounts[emulator.RuleStaleAccessToken]
}

// fastConfig is a keeper.Config with the env's test-sized timings.
func fastConfig() keeper.Config {
	var c keeper.Config
	fast(&c, nil)
	return c
}

// getIntrospect sends GET /v1/introspect through c and returns the status.
func getIntrospect(t testing.TB, e *env, c *http.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/introspect: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestKeeper_TokenSource(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		want := e.mustToken("acme")
		got, err := e.k.TokenSource("acme", 0).Token()
		if err != nil {
			t.Fatal(err)
		}
		if got.AccessToken != want.Value.Reveal() || got.TokenType != "Bearer" || !got.Expiry.Equal(want.ExpiresAt) {
			t.Fatalf("TokenSource token: type %q, expiry %v, same value %v; want Bearer, %v, true",
				got.TokenType, got.Expiry, got.AccessToken == want.Value.Reveal(), want.ExpiresAt)
		}
		if got.RefreshToken != "" {
			t.Fatal("TokenSource handed out a refresh token")
		}
		if n := e.refreshes("ok"); n != 0 {
			t.Fatalf("%d refreshes, want 0", n)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.k.TokenSource("nobody", time.Second).Token()
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeNotFound {
			t.Fatalf("code %q (%v), want not_found", code, err)
		}
	})
}

func TestKeeper_Transport(t *testing.T) {
	t.Run("InjectsBearer", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		tok := e.mustToken("acme")
		rec := &authRecorder{}
		req, err := http.NewRequest(http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer the-callers-own")
		resp, err := e.k.Client("acme", rec).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("API status %d, want 200", resp.StatusCode)
		}
		if !cmp.Equal([]string{"Bearer " + tok.Value.Reveal()}, rec.headers()) {
			t.Fatal("the request did not carry exactly the keeper's token (diff redacted)")
		}
		if got := req.Header.Get("Authorization"); got != "Bearer the-callers-own" {
			t.Fatal("the Transport modified the caller's request")
		}
		if ok, bad := e.apiCount("ok"), e.apiCount("invalid_token"); ok != 1 || bad != 0 {
			t.Fatalf("API outcomes ok=%d invalid_token=%d, want 1 and 0", ok, bad)
		}
	})

	t.Run("RetryOnce401", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		// A second keeper on the same store forces a refresh: the first
		// keeper's cached token dies at the emulator behind its back.
		k2 := e.newKeeper(fastConfig())
		fresh, err := k2.Refresh(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if cached := e.mustToken("acme"); !cached.Value.Equal(old.Value) {
			t.Fatal("setup: the first keeper no longer serves its cached token")
		}
		rec := &authRecorder{}
		if got := getIntrospect(t, e, e.k.Client("acme", rec)); got != http.StatusOK {
			t.Fatalf("API status %d after the retry, want 200", got)
		}
		want := []string{"Bearer " + old.Value.Reveal(), "Bearer " + fresh.Value.Reveal()}
		if got := rec.headers(); !cmp.Equal(got, want) {
			t.Fatalf("%d requests sent; want 2: the stale token, then the new one (values redacted)", len(got))
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes in all, want 1 (the second keeper's)", n)
		}
		if ok, bad := e.apiCount("ok"), e.apiCount("invalid_token"); ok != 1 || bad != 1 {
			t.Fatalf("API outcomes ok=%d invalid_token=%d, want 1 and 1", ok, bad)
		}
		if got := e.mustToken("acme"); !got.Value.Equal(fresh.Value) {
			t.Fatal("after the 401 the first keeper does not serve the new token")
		}
	})

	t.Run("NoRetryWithoutGetBody", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		k2 := e.newKeeper(fastConfig())
		if _, err := k2.Refresh(context.Background(), "acme"); err != nil {
			t.Fatal(err)
		}
		rec := &authRecorder{}
		// io.MultiReader hides the reader's type: http.NewRequest sets no
		// GetBody, so the request cannot be replayed.
		req, err := http.NewRequest(http.MethodPost, e.srv.APIURL+"/v1/export-jobs", io.MultiReader(strings.NewReader(`{"format":"csv"}`)))
		if err != nil {
			t.Fatal(err)
		}
		if req.GetBody != nil {
			t.Fatal("setup: the request is replayable")
		}
		resp, err := e.k.Client("acme", rec).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want the 401 handed back", resp.StatusCode)
		}
		if n := len(rec.headers()); n != 1 {
			t.Fatalf("%d requests sent, want 1 (no retry)", n)
		}
		if got := e.mustToken("acme"); got.Value.Equal(old.Value) {
			t.Fatal("after a 401 without a retry, the keeper still serves the refused token")
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("%d refreshes, want 1 (the second keeper's)", n)
		}
	})

	t.Run("Storm401OneRefresh", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		// This keeper's clock lags the emulator's by 16 minutes: it serves
		// its token within the promise while the emulator holds it expired,
		// so every call meets a 401 with the token the store still holds.
		cfg := fastConfig()
		cfg.Now = time.Now
		k := e.keeperOverStore(e.store, cfg)
		old, err := e.token(k, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.Advance(16 * time.Minute); err != nil {
			t.Fatal(err)
		}
		// Every call sends its stale token before any is answered (a
		// barrier in the base transport), and the token endpoint is slow,
		// so most of the 401s meet the one refresh in flight.
		e.faults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: emulator.Duration(100 * time.Millisecond), Max: emulator.Duration(100 * time.Millisecond)}}})
		const calls = 20
		var arrived atomic.Int32
		allSent := make(chan struct{})
		stale := "Bearer " + old.Value.Reveal()
		rec := &authRecorder{onSend: func(auth string) {
			if auth != stale {
				return
			}
			if arrived.Add(1) == calls {
				close(allSent)
			}
			<-allSent
		}}
		client := k.Client("acme", rec)
		var wg sync.WaitGroup
		statuses := make([]int, calls)
		for i := range statuses {
			wg.Go(func() { statuses[i] = getIntrospect(t, e, client) })
		}
		wg.Wait()
		for i, s := range statuses {
			if s != http.StatusOK {
				t.Errorf("call %d: status %d, want 200", i, s)
			}
		}
		if n := e.refreshes("ok"); n != 1 {
			t.Fatalf("a storm of 20 calls meeting 401 made %d refreshes, want 1", n)
		}
		if n := e.apiCount("invalid_token"); n != calls {
			t.Fatalf("%d calls met a 401, want all %d", n, calls)
		}
		if n := len(rec.headers()); n != 2*calls {
			t.Fatalf("%d requests sent, want %d: each call once with the stale token, once with the new", n, 2*calls)
		}
		if tok, err := e.token(k, "acme"); err != nil || tok.Value.Equal(old.Value) {
			t.Fatalf("after the storm: %v, or still the old token", err)
		}
	})

	t.Run("OtherChallengeNoRefresh", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		old := e.mustToken("acme")
		// An upstream that refuses for another reason than the token's life:
		// insufficient_scope, invalid_request. Neither may cost a refresh.
		for _, challenge := range []string{
			`Bearer realm="x", error="insufficient_scope", scope="export-jobs:write"`,
			`Bearer error=invalid_request, error_description="bad header"`,
		} {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", challenge)
				w.WriteHeader(http.StatusUnauthorized)
			}))
			resp, err := e.k.Client("acme", nil).Get(up.URL)
			up.Close()
			if err != nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: %v %v; want the 401 handed back", challenge, resp, err)
			}
			resp.Body.Close()
		}
		if n := e.refreshes("ok"); n != 0 {
			t.Fatalf("%d refreshes after 401s that were not about the token", n)
		}
		if got := e.mustToken("acme"); !got.Value.Equal(old.Value) {
			t.Fatal("the token changed")
		}
	})

	t.Run("ErrReconnectRequiredAfter401", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.mustToken("acme")
		auths := e.srv.Report().Authorisations
		if err := e.srv.Revoke(auths[len(auths)-1].ID); err != nil {
			t.Fatal(err)
		}
		_, err := e.k.Client("acme", nil).Get(e.srv.APIURL + "/v1/introspect")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeReconnectRequired {
			t.Fatalf("code %q (%v); want reconnect_required on the first call after the revocation", code, err)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		e := newEnv(t)
		rec := &authRecorder{}
		_, err := e.k.Client("nobody", rec).Get(e.srv.APIURL + "/v1/introspect")
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeNotFound {
			t.Fatalf("code %q (%v), want not_found", code, err)
		}
		if n := len(rec.headers()); n != 0 {
			t.Fatalf("%d requests sent without a token", n)
		}
	})

	t.Run("DrainDelaysRefresh", func(t *testing.T) {
		e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) { c.DrainWait = 5 * time.Second })
		var mu sync.Mutex
		var sentAt time.Time
		keeper.SetHook(e.k, func(step string, _ tokenkeeper.ConnectionID) {
			if step == "sending" {
				mu.Lock()
				sentAt = time.Now()
				mu.Unlock()
			}
		})
		e.connect("acme")
		old := e.mustToken("acme")
		e.faults(emulator.Faults{emulator.EndpointAPI: {Latency: &emulator.Latency{Min: emulator.Duration(400 * time.Millisecond), Max: emulator.Duration(400 * time.Millisecond)}}})
		inFlight := make(chan struct{})
		var once sync.Once
		var doneAt time.Time // set before the keeper's Transport learns the call ended
		rec := &authRecorder{
			onSend:   func(string) { once.Do(func() { close(inFlight) }) },
			onReturn: func() { mu.Lock(); doneAt = time.Now(); mu.Unlock() },
		}
		var status int
		done := make(chan struct{})
		go func() {
			defer close(done)
			status = getIntrospect(t, e, e.k.Client("acme", rec))
		}()
		<-inFlight
		// The promise ends while the call is held at the API.
		e.expire("acme")
		tok := e.mustToken("acme")
		<-done
		if status != http.StatusOK {
			t.Fatalf("the call in flight got %d, want 200", status)
		}
		if n := len(rec.headers()); n != 1 {
			t.Fatalf("%d requests sent, want 1 (a retry would hide a 401)", n)
		}
		if n := e.apiCount("invalid_token"); n != 0 {
			t.Fatalf("%d API calls met a 401", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if sentAt.IsZero() || !sentAt.After(doneAt) {
			t.Fatalf("the refresh was sent at %v, before the call in flight returned at %v", sentAt, doneAt)
		}
		if tok.Value.Equal(old.Value) || e.refreshes("ok") != 1 {
			t.Fatalf("no refresh after the drain (%d refreshes)", e.refreshes("ok"))
		}
		if n := e.staleViolations(); n != 0 {
			t.Fatalf("%d stale_access_token violations: %v", n, e.violations())
		}
		if n := len(e.logLines("refresh: calls with the old token still in flight after the drain wait")); n != 0 {
			t.Fatal("the drain gave up waiting")
		}
	})
}
