package emulator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// oneShotClient uses a new connection for every request, so that a dropped connection is
// never mistaken for a stale keep-alive and retried by the transport.
var oneShotClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// refreshRaw presents rt and returns what came back, or the transport error of a dropped
// connection.
func refreshRaw(srv *emulator.Server, rt string) (int, []byte, http.Header, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(testClient))
	resp, err := oneShotClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header, err
}

// setFaults sets faults over HTTP and fails the test unless they were accepted.
func setFaults(t *testing.T, srv *emulator.Server, body string) {
	t.Helper()
	if status, _ := controlSend(t, srv, http.MethodPut, "/faults", body, nil); status != http.StatusOK {
		t.Fatalf("PUT /_emulator/faults %s: status %d, want 200", body, status)
	}
}

func getFaults(t *testing.T, srv *emulator.Server) emulator.Faults {
	t.Helper()
	var f emulator.Faults
	if status, _ := controlSend(t, srv, http.MethodGet, "/faults", "", &f); status != http.StatusOK {
		t.Fatalf("GET /_emulator/faults: status %d", status)
	}
	return f
}

func TestFaults_Validation(t *testing.T) {
	srv := startServer(t, emulator.Config{})
	setFaults(t, srv, `{"api":{"error_503":0.25,"retry_after":"2s"},"token":{"script":["error_500"]}}`)
	want := emulator.Faults{
		emulator.EndpointAPI:   {Error503: 0.25, RetryAfter: emulator.Duration(2 * time.Second)},
		emulator.EndpointToken: {Script: []string{emulator.Fault500}},
	}
	if diff := cmp.Diff(want, getFaults(t, srv)); diff != "" {
		t.Fatalf("faults as set (-want +got):\n%s", diff)
	}
	cases := map[string]string{
		"UnknownEndpoint":            `{"oauth":{"error_500":0.1}}`,
		"RateAboveOne":               `{"token":{"error_500":1.5}}`,
		"NegativeRate":               `{"token":{"error_503":-0.1}}`,
		"RatesSumAboveOne":           `{"token":{"error_500":0.6,"drop_before":0.6}}`,
		"NegativeRetry":              `{"token":{"retry_after":"-1s"}}`,
		"LatencyBothKinds":           `{"api":{"latency":{"min":"1ms","max":"2ms","p50":"1ms","p99":"2ms"}}}`,
		"LatencyMaxBelow":            `{"api":{"latency":{"min":"5ms","max":"1ms"}}}`,
		"LatencyP99Below":            `{"api":{"latency":{"p50":"5ms","p99":"1ms"}}}`,
		"UnknownScriptKind":          `{"token":{"script":["error_503","explode"]}}`,
		"UnknownField":               `{"token":{"error_404":0.1}}`,
		"BadDuration":                `{"token":{"retry_after":"soon"}}`,
		"AuthorizeAfterCommitRate":   `{"authorize":{"drop_after_commit":0.1}}`,
		"AuthorizeAfterCommitScript": `{"authorize":{"script":["garble_after_commit"]}}`,
	}
	for name, body := range cases {
		var e ctlErrorBody
		if status, _ := controlSend(t, srv, http.MethodPut, "/faults", body, &e); status != http.StatusBadRequest || e.Error == "" {
			t.Errorf("%s: status %d, error %q; want 400 with an error", name, status, e.Error)
		}
		if diff := cmp.Diff(want, getFaults(t, srv)); diff != "" {
			t.Errorf("%s: a refused PUT changed the faults (-want +got):\n%s", name, diff)
		}
		// The Go API refuses the same configurations, where Go can express them.
		var f emulator.Faults
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if dec.Decode(&f) != nil {
			continue
		}
		if err := srv.SetFaults(f); err == nil {
			t.Errorf("%s: SetFaults(%v) = nil, want an error", name, f)
		}
		if diff := cmp.Diff(want, srv.Faults()); diff != "" {
			t.Errorf("%s: a refused SetFaults changed the faults (-want +got):\n%s", name, diff)
		}
	}
}

// TestFaults_TokenScript injects one fault into a refresh and checks what the client sees
// and whether the token rotated behind its back.
func TestFaults_TokenScript(t *testing.T) {
	cases := []struct {
		name           string
		faults         emulator.EndpointFaults
		wantStatus     int // 0: the connection drops with no response
		wantRetryAfter string
		wantJSON       bool
		rotated        bool
	}{
		{"Error503", emulator.EndpointFaults{Script: []string{emulator.Fault503}}, 503, "1", true, false},
		{"Error429", emulator.EndpointFaults{Script: []string{emulator.Fault429}, RetryAfter: emulator.Duration(3 * time.Second)}, 429, "3", true, false},
		{"Error500", emulator.EndpointFaults{Script: []string{emulator.Fault500}}, 500, "", true, false},
		{"DropBefore", emulator.EndpointFaults{Script: []string{emulator.FaultDropBefore}}, 0, "", false, false},
		{"DropAfterCommit", emulator.EndpointFaults{Script: []string{emulator.FaultDropAfterCommit}}, 0, "", false, true},
		{"GarbleAfterCommit", emulator.EndpointFaults{Script: []string{emulator.FaultGarbleAfterCommit}}, 200, "", false, true},
		{"Error500AfterCommit", emulator.EndpointFaults{Script: []string{emulator.Fault500AfterCommit}}, 500, "", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connect(t, srv)
			if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: tc.faults}); err != nil {
				t.Fatal(err)
			}
			status, body, h, err := refreshRaw(srv, tk.Refresh)
			switch {
			case tc.wantStatus == 0 && err == nil:
				t.Fatalf("got status %d, want a transport error", status)
			case tc.wantStatus != 0 && err != nil:
				t.Fatalf("transport error %v, want status %d", err, tc.wantStatus)
			case status != tc.wantStatus:
				t.Fatalf("status %d, want %d; body %s", status, tc.wantStatus, body)
			}
			if got := h.Get("Retry-After"); got != tc.wantRetryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.wantRetryAfter)
			}
			if tc.wantStatus != 0 && json.Valid(body) != tc.wantJSON {
				t.Errorf("body %q: valid JSON %v, want %v", body, !tc.wantJSON, tc.wantJSON)
			}
			if s := srv.Faults()[emulator.EndpointToken].Script; len(s) != 0 {
				t.Errorf("script %v was not consumed", s)
			}
			wantRefreshes := 0
			if tc.rotated {
				wantRefreshes = 1
			}
			if got := lastAuthorisation(t, srv).Refreshes; got != wantRefreshes {
				t.Fatalf("refreshes %d, want %d", got, wantRefreshes)
			}

			// The client retries with the refresh token it has, after any Retry-After.
			if _, err := srv.Advance(4 * time.Second); err != nil {
				t.Fatal(err)
			}
			status2, body2 := refresh(t, srv, tk.Refresh)
			a := lastAuthorisation(t, srv)
			if !tc.rotated {
				if status2 != http.StatusOK || a.State != emulator.AuthorisationActive {
					t.Errorf("retry: %d %v, state %s; want 200 and active", status2, body2, a.State)
				}
				if v := violations(srv); len(v) != 0 {
					t.Errorf("violations %v, want none", v)
				}
				return
			}
			// The lost response: the retry presents a rotated-out token.
			if status2 != http.StatusBadRequest || body2["error"] != "invalid_grant" {
				t.Errorf("retry: %d %v, want 400 invalid_grant", status2, body2)
			}
			if diff := cmp.Diff([]string{emulator.RuleRefreshTokenReuse}, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			if a.State != emulator.AuthorisationRevoked || a.RevokedReason != emulator.RevokedRefreshTokenReuse {
				t.Errorf("authorisation %s (%s), want revoked for refresh_token_reuse", a.State, a.RevokedReason)
			}
		})
	}
}

func TestFaults_RetryAfter(t *testing.T) {
	cases := []struct {
		name           string
		wait           time.Duration
		wantViolations []string
	}{
		{"Immediate", 0, []string{emulator.RuleRetryTooSoon}},
		{"AfterRetryAfter", 1100 * time.Millisecond, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connect(t, srv)
			setFaults(t, srv, `{"token":{"script":["error_503"]}}`)
			if status, _ := refresh(t, srv, tk.Refresh); status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", status)
			}
			if _, err := srv.Advance(tc.wait); err != nil {
				t.Fatal(err)
			}
			status, body := refresh(t, srv, tk.Refresh)
			tokensFrom(t, status, body) // the refresh token survived the 503
			if diff := cmp.Diff(tc.wantViolations, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFaults_ScriptNone(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	setFaults(t, srv, `{"token":{"script":["none","error_503"]}}`)

	status, body := refresh(t, srv, tk.Refresh)
	next := tokensFrom(t, status, body)
	if diff := cmp.Diff([]string{emulator.Fault503}, getFaults(t, srv)[emulator.EndpointToken].Script); diff != "" {
		t.Errorf("script after one request (-want +got):\n%s", diff)
	}
	if status, _ := refresh(t, srv, next.Refresh); status != http.StatusServiceUnavailable {
		t.Errorf("second request: status %d, want 503", status)
	}
	if s := getFaults(t, srv)[emulator.EndpointToken].Script; len(s) != 0 {
		t.Errorf("script after two requests: %v, want empty", s)
	}
	srv.Advance(2 * time.Second)
	if status, _ := refresh(t, srv, next.Refresh); status != http.StatusOK {
		t.Errorf("third request: status %d, want 200 (the script is spent)", status)
	}
}

func TestFaults_API(t *testing.T) {
	t.Run("Error503", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		setFaults(t, srv, `{"api":{"script":["error_503","error_503"]}}`)
		status, _, h := apiGet(t, srv, "/v1/introspect", tk.Access)
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" {
			t.Fatalf("status %d, Retry-After %q; want 503 and 1", status, h.Get("Retry-After"))
		}
		// An immediate retry is too soon (and meets the second 503).
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusServiceUnavailable {
			t.Errorf("immediate retry: status %d, want the scripted 503", status)
		}
		srv.Advance(1100 * time.Millisecond)
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusOK {
			t.Errorf("after Retry-After: status %d, want 200", status)
		}
		if diff := cmp.Diff([]string{emulator.RuleRetryTooSoon}, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
	})

	t.Run("DropAfterCommitCreatesJob", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connectAs(t, srv, testClient, withScope("export-jobs:read export-jobs:write"))
		setFaults(t, srv, `{"api":{"script":["drop_after_commit"]}}`)
		req, _ := http.NewRequest(http.MethodPost, srv.APIURL+"/v1/export-jobs", bytes.NewReader([]byte(`{"from":"2026-03-01","to":"2026-03-31"}`)))
		req.Header.Set("Authorization", "Bearer "+tk.Access)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := oneShotClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d, want a dropped connection", resp.StatusCode)
		}
		var list struct{ Data []exportJob }
		apiSend(t, srv, http.MethodGet, "/v1/export-jobs", tk.Access, "", &list)
		found := false
		for _, j := range list.Data {
			found = found || (j.From == "2026-03-01" && j.To == "2026-03-31")
		}
		if !found {
			t.Errorf("the job whose response was lost is not listed: %+v", list.Data)
		}
	})
}

// refreshStatuses runs n sequential refreshes against a 50% 503 rate and returns the
// statuses.
func refreshStatuses(t *testing.T, srv *emulator.Server, n int) []int {
	t.Helper()
	rt := connect(t, srv).Refresh
	if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Error503: 0.5}}); err != nil {
		t.Fatal(err)
	}
	out := make([]int, 0, n)
	for range n {
		status, body := refresh(t, srv, rt)
		if status == http.StatusOK {
			rt = tokensFrom(t, status, body).Refresh
		}
		out = append(out, status)
	}
	return out
}

func TestFaults_RatesAreSeeded(t *testing.T) {
	const n = 40
	run := func(seed uint64) []int {
		return refreshStatuses(t, startServer(t, emulator.Config{AutoApprove: true, Seed: seed}), n)
	}
	a, b, c := run(7), run(7), run(8)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("the same seed gave different statuses (-first +second):\n%s", diff)
	}
	if cmp.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same %d statuses: %v", n, a)
	}
	count := map[int]int{}
	for _, s := range a {
		count[s]++
	}
	if count[http.StatusOK] == 0 || count[http.StatusServiceUnavailable] == 0 || count[http.StatusOK]+count[http.StatusServiceUnavailable] != n {
		t.Errorf("statuses %v, want a mix of 200 and 503 only", count)
	}
}

// TestFaults_ResetRestoresSeed checks that a reset returns the fault sequence to its
// seeded start, so that a suite that resets between tests sees the same faults whatever
// ran before.
func TestFaults_ResetRestoresSeed(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true, Seed: 11})
	first := refreshStatuses(t, srv, 24)
	srv.Reset()
	if diff := cmp.Diff(first, refreshStatuses(t, srv, 24)); diff != "" {
		t.Errorf("statuses after a reset (-before +after):\n%s", diff)
	}
}

// TestFaults_LatencyConfig checks that latency settings are accepted, reported back, and
// let requests through. How the latencies are drawn is checked without a clock in
// faults_internal_test.go: tests never measure elapsed time.
func TestFaults_LatencyConfig(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	ms := func(n int) emulator.Duration { return emulator.Duration(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name string
		body string
		want emulator.Latency
	}{
		{"Uniform", `{"api":{"latency":{"min":"1ms","max":"3ms"}}}`, emulator.Latency{Min: ms(1), Max: ms(3)}},
		{"LogNormal", `{"api":{"latency":{"p50":"1ms","p99":"3ms"}}}`, emulator.Latency{P50: ms(1), P99: ms(3)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setFaults(t, srv, tc.body)
			want := emulator.Faults{emulator.EndpointAPI: {Latency: &tc.want}}
			if diff := cmp.Diff(want, getFaults(t, srv)); diff != "" {
				t.Errorf("faults as set (-want +got):\n%s", diff)
			}
			if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusOK {
				t.Errorf("status %d, want 200", status)
			}
		})
	}
}

// TestFaults_Authorize checks that server errors at the authorise endpoint reach the
// client as RFC 6749 §4.1.2.1 error redirects (a browser cannot carry a 5xx to it).
func TestFaults_Authorize(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	setFaults(t, srv, `{"authorize":{"script":["error_500","error_503","error_429"]}}`)
	_, challenge := pkce()
	for _, want := range []string{"server_error", "temporarily_unavailable", "temporarily_unavailable"} {
		resp := authorize(t, srv, authorizeQuery(testClient, challenge))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), testClient.RedirectURIs[0]) ||
			loc.Query().Get("error") != want || loc.Query().Get("state") != "st-123" || loc.Query().Has("code") {
			t.Errorf("status %d, Location %q; want 303 to the client with error=%s and the state", resp.StatusCode, loc, want)
		}
	}
	codeFrom(t, authorize(t, srv, authorizeQuery(testClient, challenge))) // the script is spent
}

// TestFaults_IntrospectRetryAfter checks that a Retry-After given by the introspection
// endpoint is enforced like any other: per client and token (see
// TestReview_IntrospectRetryAfterPerToken for another token).
func TestFaults_IntrospectRetryAfter(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tok := connect(t, srv)
	setFaults(t, srv, `{"introspect":{"script":["error_503"]}}`)
	if status, _, h := introspectAs(t, srv, testClient, tok.Access); status != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" {
		t.Fatalf("first introspection: status %d, Retry-After %q; want 503 with 1", status, h.Get("Retry-After"))
	}
	if status, _, _ := introspectAs(t, srv, testClient, tok.Access); status != http.StatusOK {
		t.Fatalf("second introspection: status %d, want 200", status)
	}
	if diff := cmp.Diff([]string{emulator.RuleRetryTooSoon}, violations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}
