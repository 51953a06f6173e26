package emulator_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// tokenRaw posts form to the token endpoint as testClient on a fresh connection, and
// returns the transport error of a dropped connection instead of failing the test.
func tokenRaw(srv *emulator.Server, form url.Values) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(testClient))
	resp, err := oneShotClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// wantInvalidGrant checks that a refresh was answered 400 invalid_grant.
func wantInvalidGrant(t *testing.T, what string, status int, body map[string]any) {
	t.Helper()
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("%s: %d %v, want 400 invalid_grant", what, status, body)
	}
}

// wantLostResponseViolations checks Report.LostResponseViolations.
func wantLostResponseViolations(t *testing.T, srv *emulator.Server, want int) {
	t.Helper()
	if got := srv.Report().LostResponseViolations; got != want {
		t.Errorf("LostResponseViolations = %d, want %d", got, want)
	}
}

// TestDelivery_LostRotation checks that a client whose refresh response was lost after
// the rotation committed, and which then presents the old refresh token, is flagged as
// following a lost response; and that once it has been told invalid_grant, trying again
// is its own fault.
func TestDelivery_LostRotation(t *testing.T) {
	for _, fault := range []string{emulator.FaultDropAfterCommit, emulator.FaultGarbleAfterCommit, emulator.Fault500AfterCommit} {
		t.Run(fault, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connect(t, srv)
			if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Script: []string{fault}}}); err != nil {
				t.Fatal(err)
			}
			// Whatever came back (nothing, a truncated body, a 500), it carried no tokens.
			if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil && strings.Contains(string(body), "refresh_token\":\"") {
				t.Fatalf("the lost response delivered tokens: %d %s", status, body)
			}
			if got := lastAuthorisation(t, srv).Refreshes; got != 1 {
				t.Fatalf("refreshes = %d, want 1: the rotation must have committed", got)
			}

			status, body := refresh(t, srv, tk.Refresh)
			wantInvalidGrant(t, "the old refresh token", status, body)
			if diff := cmp.Diff([]flagged{{emulator.RuleRefreshTokenReuse, true}}, flaggedViolations(srv)); diff != "" {
				t.Errorf("violations after the reuse (-want +got):\n%s", diff)
			}
			wantLostResponseViolations(t, srv, 1)
			wantRevoked(t, srv, emulator.RevokedRefreshTokenReuse)

			// The invalid_grant was delivered: presenting a token of the family again is
			// the client's own fault.
			status, body = refresh(t, srv, tk.Refresh)
			wantInvalidGrant(t, "after invalid_grant", status, body)
			want := []flagged{{emulator.RuleRefreshTokenReuse, true}, {emulator.RuleRetryAfterInvalidGrant, false}}
			if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
				t.Errorf("violations after the retry (-want +got):\n%s", diff)
			}
			wantLostResponseViolations(t, srv, 1)
		})
	}
}

// TestDelivery_LostRotationStaleAccessToken checks that the access token a lost refresh
// superseded is refused, and the violation is flagged as following a lost response.
func TestDelivery_LostRotationStaleAccessToken(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
	if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil {
		t.Fatalf("refresh: %d %s, want a dropped connection", status, body)
	}
	status, _, h := apiGet(t, srv, "/v1/introspect", tk.Access)
	if status != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("API with the superseded access token: %d, WWW-Authenticate %q; want 401 invalid_token", status, h.Get("WWW-Authenticate"))
	}
	if diff := cmp.Diff([]flagged{{emulator.RuleStaleAccessToken, true}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	wantLostResponseViolations(t, srv, 1)
}

// TestDelivery_ClientGaveUp checks that a refresh whose client timed out while the server
// was still working counts as a lost response: the server rotates all the same, and the
// client that retries with the old refresh token is flagged, not blamed.
func TestDelivery_ClientGaveUp(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	slowTokenEndpoint(t, srv, 300*time.Millisecond)

	impatient := &http.Client{Timeout: 50 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.Refresh}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(testClient))
	if resp, err := impatient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want the client to give up before the 300ms latency ended", resp.StatusCode)
	}
	waitFor(t, "the server to finish the abandoned refresh", func() bool {
		return srv.Report().Counters["refresh_token"]["ok"] == 1
	})
	if err := srv.SetFaults(nil); err != nil {
		t.Fatal(err)
	}

	status, body := refresh(t, srv, tk.Refresh)
	wantInvalidGrant(t, "the old refresh token", status, body)
	if diff := cmp.Diff([]flagged{{emulator.RuleRefreshTokenReuse, true}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	wantLostResponseViolations(t, srv, 1)
}

// TestDelivery_UndeliveredInvalidGrant checks that an invalid_grant the client never
// received does not count as telling it: only a refresh after a delivered invalid_grant is
// retry_after_invalid_grant.
func TestDelivery_UndeliveredInvalidGrant(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
		t.Fatal(err)
	}
	setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
	if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil {
		t.Fatalf("first refresh: %d %s, want a dropped connection", status, body)
	}

	status, body := refresh(t, srv, tk.Refresh)
	wantInvalidGrant(t, "second refresh", status, body)
	if v := flaggedViolations(srv); len(v) != 0 {
		t.Errorf("violations after the first delivered invalid_grant: %v, want none", v)
	}

	status, body = refresh(t, srv, tk.Refresh)
	wantInvalidGrant(t, "third refresh", status, body)
	if diff := cmp.Diff([]flagged{{emulator.RuleRetryAfterInvalidGrant, false}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	wantLostResponseViolations(t, srv, 0)
}

// TestDelivery_CodeReplay checks RFC 6749 §4.1.2: a code exchanged twice is refused the
// second time and every token issued from it is revoked. If the first exchange's response
// was lost, the replay is flagged as following a lost response.
func TestDelivery_CodeReplay(t *testing.T) {
	cases := []struct {
		name     string
		script   []string // faults of the first exchange
		wantLost bool
	}{
		{"Delivered", nil, false},
		{"FirstResponseLost", []string{emulator.FaultDropAfterCommit}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			code, verifier := codeFor(t, srv, testClient)
			if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Script: tc.script}}); err != nil {
				t.Fatal(err)
			}
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier}}
			status, first, err := tokenRaw(srv, form)
			switch {
			case tc.wantLost && err == nil:
				t.Fatalf("first exchange: %d %s, want a dropped connection", status, first)
			case !tc.wantLost && (err != nil || status != http.StatusOK):
				t.Fatalf("first exchange: %d %s %v, want 200", status, first, err)
			}

			status, body, h := exchangeCode(t, srv, testClient, code, verifier)
			wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_grant")
			if diff := cmp.Diff([]flagged{{emulator.RuleAuthorizationCodeReuse, tc.wantLost}}, flaggedViolations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			wantLost := 0
			if tc.wantLost {
				wantLost = 1
			}
			wantLostResponseViolations(t, srv, wantLost)
			wantRevoked(t, srv, emulator.RevokedAuthorizationCodeUsed)
			if got := srv.Report().Counters["authorization_code"]["ok"]; got != 1 {
				t.Errorf("successful exchanges = %d, want 1", got)
			}
		})
	}
}

// TestClose_InterruptsLatency checks that closing the server drops a request waiting in an
// injected latency instead of waiting it out.
func TestClose_InterruptsLatency(t *testing.T) {
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() }) // in case the test fails before closing it
	tk := connect(t, srv)
	if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {
		Latency: &emulator.Latency{Min: emulator.Duration(time.Minute), Max: emulator.Duration(time.Minute)},
		Script:  []string{emulator.FaultNone},
	}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan refreshResult, 1)
	go func() { done <- refreshNoT(srv, tk.Refresh) }()
	waitFor(t, "the refresh to reach its latency", scriptConsumed(srv, emulator.EndpointToken))

	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case r := <-done:
		if r.err == nil {
			t.Errorf("refresh during Close: %d %v, want a transport error", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh still waits 10s after Close: Close did not cut its latency short")
	}
	if got := srv.Report().Counters["refresh_token"]["ok"]; got != 0 {
		t.Errorf("refreshes completed = %d, want 0: the interrupted request must not commit", got)
	}
}

// TestClose_Emulator checks Emulator.Close on a handler served by a server of one's own: a
// request waiting in a latency is dropped, so is a later one that draws a latency, and
// everything else keeps working.
func TestClose_Emulator(t *testing.T) {
	e, err := emulator.New(emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(e.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(e.Close) // runs first: hs.Close waits for requests in flight
	tk := connectVia(t, noRedirects.Do, hs.URL, testClient)
	minute := emulator.Duration(time.Minute)
	if err := e.SetFaults(emulator.Faults{emulator.EndpointAPI: {
		Latency: &emulator.Latency{Min: minute, Max: minute},
		Script:  []string{emulator.FaultNone},
	}}); err != nil {
		t.Fatal(err)
	}
	get := func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/introspect", nil)
		req.Header.Set("Authorization", "Bearer "+tk.Access)
		resp, err := oneShotClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	done := make(chan error, 1)
	go func() {
		_, err := get()
		done <- err
	}()
	waitFor(t, "the API call to reach its latency", func() bool { return len(e.Faults()[emulator.EndpointAPI].Script) == 0 })

	e.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the call waiting in a latency got a response, want a dropped connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the API call still waits 10s after Close")
	}
	if status, err := get(); err == nil {
		t.Errorf("a call that draws a latency after Close: status %d, want a dropped connection", status)
	}
	if err := e.SetFaults(nil); err != nil {
		t.Fatal(err)
	}
	if status, err := get(); err != nil || status != http.StatusOK {
		t.Errorf("a call without latency after Close: %d %v, want 200", status, err)
	}
	e.Close() // idempotent
}
