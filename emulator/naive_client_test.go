package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// slowTokenEndpoint makes every token request take d, so that requests sent together are
// in flight together.
func slowTokenEndpoint(t *testing.T, srv *emulator.Server, d time.Duration) {
	t.Helper()
	lat := emulator.Duration(d)
	err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: lat, Max: lat}}})
	if err != nil {
		t.Fatal(err)
	}
}

// refreshResult is the outcome of one refresh sent from a goroutine, where t.Fatal is off
// limits.
type refreshResult struct {
	status int
	body   map[string]any
	err    error
}

func refreshNoT(srv *emulator.Server, rt string) refreshResult {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return refreshResult{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(testClient))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return refreshResult{err: err}
	}
	defer resp.Body.Close()
	res := refreshResult{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&res.body); err != nil {
		res.err = fmt.Errorf("decode: %w", err)
	}
	return res
}

// TestNaiveClient shows what Pleo's rule "one refresh in flight per authorisation" guards
// against: a client whose two workers refresh the same refresh token at once loses the
// whole authorisation, and the ledger says why.
func TestNaiveClient(t *testing.T) {
	t.Run("ConcurrentRefreshOfOneToken", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tok := connect(t, srv)
		// Long enough that the two requests overlap on the wire even on a loaded machine.
		slowTokenEndpoint(t, srv, 250*time.Millisecond)

		start := make(chan struct{})
		results := make([]refreshResult, 2)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				<-start
				results[i] = refreshNoT(srv, tok.Refresh)
			})
		}
		close(start)
		wg.Wait()

		var winner *refreshResult
		for i, r := range results {
			switch {
			case r.err != nil:
				t.Fatalf("refresh %d: %v", i, r.err)
			case r.status == http.StatusOK:
				if winner != nil {
					t.Fatalf("both refreshes got 200: %+v", results)
				}
				winner = &results[i]
			case r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant":
				t.Errorf("refresh %d: %d %v, want 200 or invalid_grant", i, r.status, r.body)
			}
		}
		if winner == nil {
			t.Fatalf("neither refresh got 200: %+v", results)
		}

		want := []string{emulator.RuleConcurrentRefresh, emulator.RuleRefreshTokenReuse}
		if diff := cmp.Diff(want, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
		wantRevoked(t, srv, emulator.RevokedRefreshTokenReuse)

		// Even the winner's fresh tokens died with the authorisation.
		at, _ := winner.body["access_token"].(string)
		if status, _, _ := apiGet(t, srv, "/v1/introspect", at); status != http.StatusUnauthorized {
			t.Errorf("API with the winner's access token: %d, want 401", status)
		}
	})
	t.Run("SerialisedRefreshIsClean", func(t *testing.T) {
		// The same two workers, sharing a lock and the latest token pair, break no rule.
		srv := startServer(t, emulator.Config{AutoApprove: true})
		cur := connect(t, srv)
		slowTokenEndpoint(t, srv, 10*time.Millisecond)
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() {
				mu.Lock()
				defer mu.Unlock()
				r := refreshNoT(srv, cur.Refresh)
				if r.err == nil && r.status != http.StatusOK {
					r.err = fmt.Errorf("status %d: %v", r.status, r.body)
				}
				if errs[i] = r.err; r.err == nil {
					cur.Access, _ = r.body["access_token"].(string)
					cur.Refresh, _ = r.body["refresh_token"].(string)
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("refresh %d: %v", i, err)
			}
		}
		if v := violations(srv); v != nil {
			t.Errorf("violations = %v, want none", v)
		}
		if a := lastAuthorisation(t, srv); a.State != emulator.AuthorisationActive || a.Refreshes != 2 {
			t.Errorf("authorisation %+v, want active and refreshed twice", a)
		}
	})
}
