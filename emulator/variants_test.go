package emulator_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// TestAPI_TokenRecheckedAfterLatency checks that the API checks the access token again
// when it processes a request: a token superseded while the request waited in a latency is
// refused, and that is no violation, since the client sent it while it was valid.
func TestAPI_TokenRecheckedAfterLatency(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	done := holdAPICall(t, srv, tk.Access)
	mustRefresh(t, srv, tk.Refresh)

	r := await(t, "the API call", done)
	if r.err != nil {
		t.Fatalf("API call: %v", r.err)
	}
	if r.status != http.StatusUnauthorized || !strings.Contains(r.challenge, `error="invalid_token"`) {
		t.Errorf("API call whose token was superseded meanwhile: %d, WWW-Authenticate %q; want 401 invalid_token", r.status, r.challenge)
	}
	if v := flaggedViolations(srv); len(v) != 0 {
		t.Errorf("violations %v, want none: the token was valid when sent", v)
	}
}

// TestAPI_RetryAfterPerRequest checks that a Retry-After from the API applies to the
// request it answered, not to every call made with the same token.
func TestAPI_RetryAfterPerRequest(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	setFaults(t, srv, `{"api":{"script":["error_429"],"retry_after":"2s"}}`)
	status, _, h := apiGet(t, srv, "/v2/employees", tk.Access)
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "2" {
		t.Fatalf("GET /v2/employees: %d, Retry-After %q; want 429 and 2", status, h.Get("Retry-After"))
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusOK {
		t.Errorf("another call at once: %d, want 200", status)
	}
	if v := flaggedViolations(srv); len(v) != 0 {
		t.Fatalf("violations after another call: %v, want none", v)
	}
	if status, _, _ := apiGet(t, srv, "/v2/employees", tk.Access); status != http.StatusOK {
		t.Errorf("the refused call again at once: %d, want 200 (the script is spent)", status)
	}
	want := []flagged{{emulator.RuleRetryTooSoon, false}}
	if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations after the early retry (-want +got):\n%s", diff)
	}
	advanceClock(t, srv, 2100*time.Millisecond)
	if status, _, _ := apiGet(t, srv, "/v2/employees", tk.Access); status != http.StatusOK {
		t.Errorf("after Retry-After: %d, want 200", status)
	}
	if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations after Retry-After (-want +got):\n%s", diff)
	}

	t.Run("WaitedOut", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		setFaults(t, srv, `{"api":{"script":["error_429"],"retry_after":"2s"}}`)
		if status, _, _ := apiGet(t, srv, "/v2/employees", tk.Access); status != http.StatusTooManyRequests {
			t.Fatalf("GET /v2/employees: %d, want 429", status)
		}
		advanceClock(t, srv, 2100*time.Millisecond)
		if status, _, _ := apiGet(t, srv, "/v2/employees", tk.Access); status != http.StatusOK {
			t.Errorf("after Retry-After: %d, want 200", status)
		}
		if v := flaggedViolations(srv); len(v) != 0 {
			t.Errorf("violations %v, want none", v)
		}
	})
}

// TestVariant_OmitRefreshToken checks the omit_refresh_token fault: the refresh answers a
// new access token only, and the presented refresh token stays valid (RFC 6749 §6).
func TestVariant_OmitRefreshToken(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	setFaults(t, srv, `{"token":{"script":["omit_refresh_token"]}}`)

	status, body := refresh(t, srv, tk.Refresh)
	at, _ := body["access_token"].(string)
	if status != http.StatusOK || at == "" || at == tk.Access {
		t.Fatalf("refresh: %d %v, want 200 with a new access_token", status, body)
	}
	if _, ok := body["refresh_token"]; ok {
		t.Errorf("refresh: body %v has a refresh_token field, want none", body)
	}
	if got := srv.Report().Counters["refresh_token"]["fault:"+emulator.FaultOmitRefreshToken]; got != 1 {
		t.Errorf("fault:%s counted %d times, want 1", emulator.FaultOmitRefreshToken, got)
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", at); status != http.StatusOK {
		t.Errorf("API with the new access token: %d, want 200", status)
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
		t.Errorf("API with the superseded access token: %d, want 401", status)
	}
	want := []flagged{{emulator.RuleStaleAccessToken, false}}
	if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}

	// The refresh token the client kept is still the current one.
	next := mustRefresh(t, srv, tk.Refresh)
	if next.Refresh == tk.Refresh {
		t.Errorf("the next refresh returned the same refresh token, want a rotation")
	}
	if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations after the next refresh (-want +got):\n%s", diff)
	}
	if a := lastAuthorisation(t, srv); a.State != emulator.AuthorisationActive || a.Refreshes != 2 {
		t.Errorf("authorisation %s with %d refreshes, want active with 2", a.State, a.Refreshes)
	}
}

// TestVariant_AuthorizeRedirect checks the wrong_state and missing_code faults, on an
// auto-approved request and through the consent page (the fault is drawn by GET
// /oauth/authorize and shows when the user approves).
func TestVariant_AuthorizeRedirect(t *testing.T) {
	cases := []struct {
		fault       string
		autoApprove bool
		wantCode    bool
		wantSent    bool // the redirect carries the state the client sent
	}{
		{emulator.FaultWrongState, true, true, false},
		{emulator.FaultWrongState, false, true, false},
		{emulator.FaultMissingCode, true, false, true},
		{emulator.FaultMissingCode, false, false, true},
	}
	for _, tc := range cases {
		name := tc.fault + "/Consent"
		if tc.autoApprove {
			name = tc.fault + "/AutoApprove"
		}
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: tc.autoApprove})
			if err := srv.SetFaults(emulator.Faults{emulator.EndpointAuthorize: {Script: []string{tc.fault}}}); err != nil {
				t.Fatal(err)
			}
			var resp *http.Response
			if tc.autoApprove {
				_, challenge := pkce()
				resp = authorize(t, srv, authorizeQuery(testClient, challenge))
			} else {
				page, _ := consentPage(t, srv, testClient)
				resp = postConsent(t, srv, url.Values{
					"request": {consentRequestID(t, page)}, "company": {companyNordlys}, "decision": {"approve"}})
			}
			got := redirectParams(t, resp, testClient.RedirectURIs[0])
			const sent = "st-123" // authorizeQuery's state
			if got.Has("error") {
				t.Errorf("redirect query %v has an error, want none", got)
			}
			if hasCode := got.Get("code") != ""; hasCode != tc.wantCode {
				t.Errorf("redirect query %v: code present %v, want %v", got, hasCode, tc.wantCode)
			}
			if state := got.Get("state"); tc.wantSent != (state == sent) || state == "" {
				t.Errorf("redirect state %q (sent %q): want the sent state %v, and some state", state, sent, tc.wantSent)
			}
			if n := srv.Report().Counters[emulator.EndpointAuthorize]["fault:"+tc.fault]; n != 1 {
				t.Errorf("fault:%s counted %d times, want 1", tc.fault, n)
			}
		})
	}
}

// TestFaults_ValidationOfKindsAndBounds checks where each variant fault applies, and the
// bound on injected latency.
func TestFaults_ValidationOfKindsAndBounds(t *testing.T) {
	tenMinutes := emulator.Duration(10 * time.Minute)
	aboveBound := emulator.Duration(10*time.Minute + time.Second)
	accepted := map[string]emulator.Faults{
		"OmitRefreshTokenOnToken": {emulator.EndpointToken: {OmitRefreshToken: 0.5, Script: []string{emulator.FaultOmitRefreshToken}}},
		"WrongStateOnAuthorize":   {emulator.EndpointAuthorize: {WrongState: 0.2, Script: []string{emulator.FaultWrongState}}},
		"MissingCodeOnAuthorize":  {emulator.EndpointAuthorize: {MissingCode: 0.2, Script: []string{emulator.FaultMissingCode}}},
		"LatencyMaxAtBound":       {emulator.EndpointAPI: {Latency: &emulator.Latency{Max: tenMinutes}}},
		"LatencyP99AtBound":       {emulator.EndpointAPI: {Latency: &emulator.Latency{P50: emulator.Duration(time.Second), P99: tenMinutes}}},
	}
	s := startServer(t, emulator.Config{})
	for name, f := range accepted {
		if err := s.SetFaults(f); err != nil {
			t.Errorf("%s: SetFaults = %v, want it accepted", name, err)
		}
	}

	refused := map[string]emulator.Faults{
		"OmitRefreshTokenRateOnAPI":     {emulator.EndpointAPI: {OmitRefreshToken: 0.1}},
		"OmitRefreshTokenScriptOnAPI":   {emulator.EndpointAPI: {Script: []string{emulator.FaultOmitRefreshToken}}},
		"OmitRefreshTokenOnAuthorize":   {emulator.EndpointAuthorize: {Script: []string{emulator.FaultOmitRefreshToken}}},
		"WrongStateRateOnToken":         {emulator.EndpointToken: {WrongState: 0.1}},
		"WrongStateScriptOnToken":       {emulator.EndpointToken: {Script: []string{emulator.FaultWrongState}}},
		"MissingCodeOnIntrospect":       {emulator.EndpointIntrospect: {Script: []string{emulator.FaultMissingCode}}},
		"MissingCodeRateOnAPI":          {emulator.EndpointAPI: {MissingCode: 0.1}},
		"LatencyMaxAboveBound":          {emulator.EndpointAPI: {Latency: &emulator.Latency{Max: aboveBound}}},
		"LatencyP99AboveBound":          {emulator.EndpointToken: {Latency: &emulator.Latency{P50: emulator.Duration(time.Second), P99: aboveBound}}},
		"LatencyMinAndMaxAboveBound":    {emulator.EndpointToken: {Latency: &emulator.Latency{Min: aboveBound, Max: aboveBound}}},
		"LatencyP50AndP99AboveBound":    {emulator.EndpointToken: {Latency: &emulator.Latency{P50: aboveBound, P99: aboveBound}}},
		"LatencyMaxYears":               {emulator.EndpointAPI: {Latency: &emulator.Latency{Max: emulator.Duration(100 * 365 * 24 * time.Hour)}}},
		"ValidEndpointBesideRefusedOne": {emulator.EndpointToken: {Error503: 0.1}, emulator.EndpointAPI: {WrongState: 0.1}},
	}
	before := emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault500}}}
	if err := s.SetFaults(before); err != nil {
		t.Fatal(err)
	}
	for name, f := range refused {
		if err := s.SetFaults(f); err == nil {
			t.Errorf("%s: SetFaults(%v) = nil, want an error", name, f)
		}
		body, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var e ctlErrorBody
		if status, _ := controlSend(t, s, http.MethodPut, "/faults", string(body), &e); status != http.StatusBadRequest || e.Error == "" {
			t.Errorf("%s: PUT /_emulator/faults %s: %d %q, want 400 with an error", name, body, status, e.Error)
		}
		if diff := cmp.Diff(before, s.Faults()); diff != "" {
			t.Errorf("%s: a refused configuration changed the faults (-want +got):\n%s", name, diff)
		}
	}
}

// TestToken_EmptyParametersOmitted checks RFC 6749 §3.2: a parameter sent without a value
// is treated as if it were omitted.
func TestToken_EmptyParametersOmitted(t *testing.T) {
	cases := map[string]url.Values{
		// Not a blank scope, which would be invalid_scope: no scope, so the grant's.
		"EmptyScope": {"scope": {""}},
		// Not a mismatch with the Basic credentials.
		"EmptyClientID": {"client_id": {""}},
		// Not credentials sent two ways at once.
		"EmptyClientSecret": {"client_secret": {""}},
		"AllThree":          {"scope": {""}, "client_id": {""}, "client_secret": {""}},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connect(t, srv)
			status, body, _ := refreshAs(t, srv, testClient, tk.Refresh, extra)
			tokensFrom(t, status, body)
			if got, want := body["scope"], "export-jobs:read users:read"; got != want {
				t.Errorf("scope %v, want the grant's %q", got, want)
			}
			if v := flaggedViolations(srv); len(v) != 0 {
				t.Errorf("violations %v, want none", v)
			}
		})
	}
}

// TestControl_ClockBound checks that the clock refuses to travel more than 100 years in
// all, and stays where it was when it refuses.
func TestControl_ClockBound(t *testing.T) {
	const year = 365 * 24 * time.Hour
	offset := func(t *testing.T, srv *emulator.Server) time.Duration {
		t.Helper()
		var c emulator.ClockState
		if status, _ := controlSend(t, srv, http.MethodGet, "/clock", "", &c); status != http.StatusOK {
			t.Fatalf("GET /_emulator/clock: %d", status)
		}
		return time.Duration(c.Offset)
	}
	t.Run("GoAPI", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		if _, err := srv.Advance(200 * year); err == nil {
			t.Error("Advance(200 years) = nil, want an error")
		}
		if got := offset(t, srv); got != 0 {
			t.Errorf("offset %v after a refused advance, want 0", got)
		}
		// The bound is on the total travel.
		advanceClock(t, srv, 60*year)
		if _, err := srv.Advance(60 * year); err == nil {
			t.Error("Advance(60 years) after 60 years = nil, want an error")
		}
		if got := offset(t, srv); got != 60*year {
			t.Errorf("offset %v, want 60 years", got)
		}
	})
	t.Run("ControlPlane", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		var e ctlErrorBody
		status, _ := controlSend(t, srv, http.MethodPost, "/clock", `{"advance":"1753200h"}`, &e)
		if status != http.StatusBadRequest || e.Error == "" {
			t.Errorf("POST /_emulator/clock 1753200h: %d %q, want 400 with an error", status, e.Error)
		}
		if got := offset(t, srv); got != 0 {
			t.Errorf("offset %v after a refused advance, want 0", got)
		}
	})
}
