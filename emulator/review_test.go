package emulator_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// Tests written in review of the fixes of commit 6af07fb; each one fails if the fix it
// names is undone.

// giveUp sends req from a client that stops waiting after 50 ms and closes its
// connection. It fails the test if an answer came first: the server must be slower.
func giveUp(t *testing.T, req *http.Request) {
	t.Helper()
	impatient := &http.Client{Timeout: 50 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := impatient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("%s %s: status %d, want the client to give up first", req.Method, req.URL.Path, resp.StatusCode)
	}
}

// codeExchangeForm is the form that redeems code with verifier as testClient.
func codeExchangeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier}}
}

// TestReview_LostResponseExcuseEnds checks that a lost response excuses a client only
// until it has been told: the first use of the superseded access token (or the replayed
// code) is flagged lost_response, and the next, after a delivered 401 (or invalid_grant),
// is not. A notice the client never received does not end the excuse.
func TestReview_LostResponseExcuseEnds(t *testing.T) {
	t.Run("AccessToken", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
		if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil {
			t.Fatalf("refresh: %d %s, want a dropped connection", status, body)
		}
		var want []flagged
		for i, lost := range []bool{true, false, false} {
			if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
				t.Fatalf("call %d with the superseded access token: %d, want 401", i+1, status)
			}
			want = append(want, flagged{emulator.RuleStaleAccessToken, lost})
			if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
				t.Errorf("violations after call %d (-want +got):\n%s", i+1, diff)
			}
		}
		wantLostResponseViolations(t, srv, 1)
	})

	t.Run("Code", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		code, verifier := codeFor(t, srv, testClient)
		setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
		if status, body, err := tokenRaw(srv, codeExchangeForm(code, verifier)); err == nil {
			t.Fatalf("exchange: %d %s, want a dropped connection", status, body)
		}
		var want []flagged
		for i, lost := range []bool{true, false, false} {
			status, body, h := exchangeCode(t, srv, testClient, code, verifier)
			wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_grant")
			want = append(want, flagged{emulator.RuleAuthorizationCodeReuse, lost})
			if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
				t.Errorf("violations after replay %d (-want +got):\n%s", i+1, diff)
			}
		}
		wantLostResponseViolations(t, srv, 1)
	})

	t.Run("UndeliveredNotice/AccessToken", func(t *testing.T) {
		// The log line of a request is written when its handler returns: the test waits
		// for it to know the server is done with the call the client abandoned.
		var buf syncBuffer
		srv := startServer(t, emulator.Config{
			AutoApprove: true,
			Logger:      slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
		tk := connect(t, srv)
		setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
		if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil {
			t.Fatalf("refresh: %d %s, want a dropped connection", status, body)
		}
		setFaults(t, srv, `{"api":{"latency":{"min":"300ms","max":"300ms"},"script":["none"]}}`)
		req, _ := http.NewRequest(http.MethodGet, srv.APIURL+"/v1/introspect", nil)
		req.Header.Set("Authorization", "Bearer "+tk.Access)
		giveUp(t, req)
		waitFor(t, "the server to answer the abandoned call", func() bool {
			return strings.Contains(buf.String(), "path=/v1/introspect status=401")
		})
		if err := srv.SetFaults(nil); err != nil {
			t.Fatal(err)
		}

		// The 401 went nowhere: the client still cannot know.
		for i := range 2 {
			if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
				t.Fatalf("call %d after the abandoned one: %d, want 401", i+1, status)
			}
		}
		want := []flagged{
			{emulator.RuleStaleAccessToken, true}, // the abandoned call
			{emulator.RuleStaleAccessToken, true}, // its 401 was never delivered
			{emulator.RuleStaleAccessToken, false},
		}
		if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
		wantLostResponseViolations(t, srv, 2)
	})

	t.Run("UndeliveredNotice/Code", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		code, verifier := codeFor(t, srv, testClient)
		setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
		if status, body, err := tokenRaw(srv, codeExchangeForm(code, verifier)); err == nil {
			t.Fatalf("exchange: %d %s, want a dropped connection", status, body)
		}
		setFaults(t, srv, `{"token":{"latency":{"min":"300ms","max":"300ms"},"script":["none"]}}`)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(codeExchangeForm(code, verifier).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", basicAuth(testClient))
		giveUp(t, req)
		// settle counts the outcome under the lock that decides delivery.
		waitFor(t, "the server to settle the abandoned replay", func() bool {
			return srv.Report().Counters["authorization_code"]["invalid_grant"] == 1
		})
		if err := srv.SetFaults(nil); err != nil {
			t.Fatal(err)
		}

		for range 2 {
			status, body, h := exchangeCode(t, srv, testClient, code, verifier)
			wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_grant")
		}
		want := []flagged{
			{emulator.RuleAuthorizationCodeReuse, true}, // the abandoned replay
			{emulator.RuleAuthorizationCodeReuse, true}, // its invalid_grant was never delivered
			{emulator.RuleAuthorizationCodeReuse, false},
		}
		if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
		wantLostResponseViolations(t, srv, 2)
	})
}

// TestReview_LostResponseExcuseEndsOnRecheck checks that the 401 of the re-check after a
// latency tells the client too: the call was sent with a valid access token, a refresh
// whose response was lost superseded it meanwhile, and the call was answered 401. That
// is no violation; but using the token again after that 401 is the client's own doing.
func TestReview_LostResponseExcuseEndsOnRecheck(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	done := holdAPICall(t, srv, tk.Access)
	setFaults(t, srv, `{"token":{"script":["drop_after_commit"]}}`)
	if status, body, _, err := refreshRaw(srv, tk.Refresh); err == nil {
		t.Fatalf("refresh: %d %s, want a dropped connection", status, body)
	}
	if r := await(t, "the API call", done); r.err != nil || r.status != http.StatusUnauthorized {
		t.Fatalf("API call whose token was superseded meanwhile: %d %v, want 401", r.status, r.err)
	}
	if v := flaggedViolations(srv); len(v) != 0 {
		t.Fatalf("violations %v, want none: the token was valid when sent", v)
	}

	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
		t.Fatalf("the token again after its 401: %d, want 401", status)
	}
	if diff := cmp.Diff([]flagged{{emulator.RuleStaleAccessToken, false}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	wantLostResponseViolations(t, srv, 0)
}

// TestReview_StateNotVerified checks that exchanging a code whose redirect carried a
// forged state (the wrong_state fault) succeeds, as at Pleo, and records
// state_not_verified against its authorisation; and that a normal flow records nothing.
func TestReview_StateNotVerified(t *testing.T) {
	if !slices.Contains(emulator.Rules(), emulator.RuleStateNotVerified) {
		t.Errorf("Rules() = %v, want it to list %s", emulator.Rules(), emulator.RuleStateNotVerified)
	}
	for _, autoApprove := range []bool{true, false} {
		name := "Consent"
		if autoApprove {
			name = "AutoApprove"
		}
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: autoApprove})
			setFaults(t, srv, `{"authorize":{"script":["wrong_state"]}}`)
			var resp *http.Response
			var verifier string
			if autoApprove {
				var challenge string
				verifier, challenge = pkce()
				resp = authorize(t, srv, authorizeQuery(testClient, challenge))
			} else {
				var page string
				page, verifier = consentPage(t, srv, testClient)
				resp = postConsent(t, srv, url.Values{
					"request": {consentRequestID(t, page)}, "company": {companyNordlys}, "decision": {"approve"}})
			}
			q := redirectParams(t, resp, testClient.RedirectURIs[0])
			if q.Get("state") == "st-123" || q.Get("code") == "" {
				t.Fatalf("redirect query %v, want a code and a state other than the one sent", q)
			}
			if v := flaggedViolations(srv); len(v) != 0 {
				t.Fatalf("violations before the exchange: %v, want none", v)
			}

			exchangeTokens(t, srv, testClient, q.Get("code"), verifier)
			if diff := cmp.Diff([]flagged{{emulator.RuleStateNotVerified, false}}, flaggedViolations(srv)); diff != "" {
				t.Fatalf("violations (-want +got):\n%s", diff)
			}
			if got, want := srv.Report().Violations[0].Authorisation, lastAuthorisation(t, srv).ID; got != want {
				t.Errorf("the violation names authorisation %q, want %q", got, want)
			}
		})
	}
	t.Run("NormalFlow", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		connect(t, srv)
		if v := flaggedViolations(srv); len(v) != 0 {
			t.Errorf("violations %v, want none", v)
		}
	})
}

// TestReview_OmitRefreshTokenNotDrawnByExchange checks that a code exchange never draws
// omit_refresh_token: a script keeps it for the next refresh, and a rate of 1 leaves the
// exchange whole.
func TestReview_OmitRefreshTokenNotDrawnByExchange(t *testing.T) {
	// refreshOmitted checks that a refresh of rt answers a new access token and no
	// refresh_token.
	refreshOmitted := func(t *testing.T, srv *emulator.Server, rt string) {
		t.Helper()
		status, body := refresh(t, srv, rt)
		if at, _ := body["access_token"].(string); status != http.StatusOK || at == "" {
			t.Fatalf("refresh: %d %v, want 200 with an access_token", status, body)
		}
		if _, ok := body["refresh_token"]; ok {
			t.Errorf("refresh: body %v has a refresh_token, want none (omit_refresh_token)", body)
		}
		if got := srv.Report().Counters["refresh_token"]["fault:"+emulator.FaultOmitRefreshToken]; got != 1 {
			t.Errorf("refresh_token fault:%s = %d, want 1", emulator.FaultOmitRefreshToken, got)
		}
	}
	noFaultOnExchange := func(t *testing.T, srv *emulator.Server) {
		t.Helper()
		for outcome := range srv.Report().Counters["authorization_code"] {
			if strings.HasPrefix(outcome, "fault:") {
				t.Errorf("the code exchange counted %s", outcome)
			}
		}
	}

	t.Run("Script", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		setFaults(t, srv, `{"token":{"script":["omit_refresh_token"]}}`)
		tk := connect(t, srv) // fails unless the exchange returns a refresh_token
		noFaultOnExchange(t, srv)
		if diff := cmp.Diff([]string{emulator.FaultOmitRefreshToken}, srv.Faults()[emulator.EndpointToken].Script); diff != "" {
			t.Fatalf("script after the exchange (-want +got):\n%s", diff)
		}
		refreshOmitted(t, srv, tk.Refresh)
		if s := srv.Faults()[emulator.EndpointToken].Script; len(s) != 0 {
			t.Errorf("script after the refresh: %v, want it spent", s)
		}
	})
	t.Run("Rate", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		setFaults(t, srv, `{"token":{"omit_refresh_token":1}}`)
		tk := connect(t, srv) // fails unless the exchange returns a refresh_token
		noFaultOnExchange(t, srv)
		refreshOmitted(t, srv, tk.Refresh)
	})
}

// overlappingRefreshes presents rt twice: the second request is sent once the first has
// been marked in flight, while it waits out a 250 ms latency. It returns both outcomes.
func overlappingRefreshes(t *testing.T, srv *emulator.Server, rt string) [2]refreshResult {
	t.Helper()
	lat := emulator.Duration(250 * time.Millisecond)
	if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {
		Latency: &emulator.Latency{Min: lat, Max: lat},
		Script:  []string{emulator.FaultNone, emulator.FaultNone},
	}}); err != nil {
		t.Fatal(err)
	}
	var out [2]refreshResult
	var wg sync.WaitGroup
	wg.Go(func() { out[0] = refreshNoT(srv, rt) })
	// The mark is taken before the fault is drawn.
	waitFor(t, "the first refresh to be marked in flight", func() bool {
		return len(srv.Faults()[emulator.EndpointToken].Script) == 1
	})
	wg.Go(func() { out[1] = refreshNoT(srv, rt) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	await(t, "the two refreshes", done)
	return out
}

// wantConcurrentRefresh checks the outcome of overlappingRefreshes: one winner, one
// invalid_grant, and the ledger saw the overlap.
func wantConcurrentRefresh(t *testing.T, srv *emulator.Server, out [2]refreshResult) {
	t.Helper()
	var statuses []int
	for _, r := range out {
		if r.err != nil {
			t.Fatalf("refresh: %v", r.err)
		}
		statuses = append(statuses, r.status)
	}
	// Either may win: both wait out the same latency, and a loaded machine can
	// wake the second first.
	slices.Sort(statuses)
	if diff := cmp.Diff([]int{http.StatusOK, http.StatusBadRequest}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	want := []flagged{{emulator.RuleConcurrentRefresh, false}, {emulator.RuleRefreshTokenReuse, false}}
	if diff := cmp.Diff(want, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}

// TestReview_InFlightReleasedOnce checks that a refresh releases its in-flight mark exactly
// once, whichever way it ends: released twice, the count goes negative and hides the next
// overlap; never released, it blames the next lone refresh.
func TestReview_InFlightReleasedOnce(t *testing.T) {
	t.Run("AfterGrant", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		next := mustRefresh(t, srv, connect(t, srv).Refresh)
		if v := flaggedViolations(srv); len(v) != 0 {
			t.Fatalf("violations after one refresh: %v, want none", v)
		}
		wantConcurrentRefresh(t, srv, overlappingRefreshes(t, srv, next.Refresh))
	})
	for _, fault := range []string{emulator.Fault503, emulator.Fault500, emulator.FaultDropBefore} {
		t.Run("BeforeFault/"+fault, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connect(t, srv)
			if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Script: []string{fault}}}); err != nil {
				t.Fatal(err)
			}
			status, body, _, err := refreshRaw(srv, tk.Refresh)
			if fault == emulator.FaultDropBefore {
				if err == nil {
					t.Fatalf("refresh: %d %s, want a dropped connection", status, body)
				}
			} else if err != nil || status < 500 {
				t.Fatalf("refresh: %d %s %v, want a 5xx", status, body, err)
			}
			advanceClock(t, srv, 2*time.Second) // past the Retry-After of a 503

			// A lone refresh overlaps nothing: the fault released the mark.
			next := mustRefresh(t, srv, tk.Refresh)
			if v := flaggedViolations(srv); len(v) != 0 {
				t.Fatalf("violations after a lone refresh: %v, want none", v)
			}
			// Two refreshes overlap: the fault released the mark only once.
			wantConcurrentRefresh(t, srv, overlappingRefreshes(t, srv, next.Refresh))
		})
	}
}

// blockingWarn is a slog.Handler whose Warn records wait until release is closed; entered
// is closed when the first arrives. Other records pass at once.
type blockingWarn struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
}

func (h *blockingWarn) Enabled(context.Context, slog.Level) bool { return true }

func (h *blockingWarn) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.once.Do(func() { close(h.entered) })
		<-h.release
	}
	return nil
}

func (h *blockingWarn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *blockingWarn) WithGroup(string) slog.Handler      { return h }

// TestReview_LogOutsideLock checks that a log sink that stalls while writing a violation
// does not stall other requests: log lines are written after the state lock is released.
func TestReview_LogOutsideLock(t *testing.T) {
	h := &blockingWarn{entered: make(chan struct{}), release: make(chan struct{})}
	srv := startServer(t, emulator.Config{AutoApprove: true, Logger: slog.New(h)})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(h.release) }) }
	t.Cleanup(release) // before the server closes: cleanups run last first

	stale := connect(t, srv)
	advanceClock(t, srv, emulator.DefaultAccessTokenTTL+time.Minute)
	fresh := connect(t, srv)

	a := make(chan apiResult, 1)
	go func() { a <- apiStatus(srv, stale.Access) }() // expired: stale_access_token, a Warn line
	await(t, "the violation's log line to reach the handler", h.entered)

	b := make(chan apiResult, 1)
	go func() { b <- apiStatus(srv, fresh.Access) }()
	select {
	case r := <-b:
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("a valid call while a log line is being written: %d %v, want 200", r.status, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a valid call waited 10s behind a stalled log sink: the log is written under the state lock")
	}

	release()
	if r := await(t, "the stale call", a); r.err != nil || r.status != http.StatusUnauthorized {
		t.Errorf("the stale call: %d %v, want 401", r.status, r.err)
	}
	if diff := cmp.Diff([]flagged{{emulator.RuleStaleAccessToken, false}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}

// TestReview_EmptyParameters checks RFC 6749 §3.1 and §3.2 on the token endpoint: a
// parameter sent empty counts as omitted, and a parameter sent twice is refused even when
// one copy is empty.
func TestReview_EmptyParameters(t *testing.T) {
	t.Run("EmptyCodeVerifier", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		code, verifier := codeFor(t, srv, testClient)
		status, body, h := tokenCall(t, srv, testClient, codeExchangeForm(code, ""))
		wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_request")
		if diff := cmp.Diff([]flagged{{emulator.RulePKCEMissing, false}}, flaggedViolations(srv)); diff != "" {
			t.Fatalf("violations (-want +got):\n%s", diff)
		}
		if got, want := srv.Report().Violations[0].Authorisation, lastAuthorisation(t, srv).ID; got != want {
			t.Errorf("the violation names authorisation %q, want the code's %q", got, want)
		}
		exchangeTokens(t, srv, testClient, code, verifier) // the refused request spent nothing
	})
	t.Run("EmptyRefreshToken", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		status, body, h := refreshAs(t, srv, testClient, "", nil)
		wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_request")
		if v := flaggedViolations(srv); len(v) != 0 {
			t.Errorf("violations %v, want none", v)
		}
		mustRefresh(t, srv, tk.Refresh)
	})
	t.Run("EmptyClientSecretWithoutBasic", func(t *testing.T) {
		// An empty client_secret is an omitted one (RFC 6749 §2.3.1 lets a client with an
		// empty secret leave it out), so the request carries a client_id and no
		// credentials: unauthenticated, and no credentials were sent in the body.
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		base := "grant_type=refresh_token&refresh_token=" + url.QueryEscape(tk.Refresh) + "&client_id=" + url.QueryEscape(testClient.ID)
		status, body, h := sendRaw(t, http.MethodPost, srv.URL+"/oauth/token", formHeader(""), base+"&client_secret=")
		wantOAuthError(t, status, body, h, http.StatusUnauthorized, "invalid_client")
		if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
			t.Errorf("WWW-Authenticate = %q, want a Basic challenge", got)
		}
		if v := flaggedViolations(srv); len(v) != 0 {
			t.Errorf("violations %v, want none: no credentials were sent", v)
		}
		_, without, _ := sendRaw(t, http.MethodPost, srv.URL+"/oauth/token", formHeader(""), base)
		if diff := cmp.Diff(without, body); diff != "" {
			t.Errorf("answer differs from one without client_secret (-without +with empty):\n%s", diff)
		}
		if got := lastAuthorisation(t, srv).Refreshes; got != 0 {
			t.Errorf("refreshes = %d, want 0", got)
		}
	})
	t.Run("RepeatedWithOneEmpty", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		for _, form := range []string{
			"grant_type=refresh_token&refresh_token=&refresh_token=" + url.QueryEscape(tk.Refresh),
			"grant_type=refresh_token&refresh_token=" + url.QueryEscape(tk.Refresh) + "&refresh_token=",
		} {
			status, body, h := sendRaw(t, http.MethodPost, srv.URL+"/oauth/token", formHeader(basicAuth(testClient)), form)
			wantOAuthError(t, status, body, h, http.StatusBadRequest, "invalid_request")
			if desc, _ := body["error_description"].(string); !strings.Contains(desc, "repeated") {
				t.Errorf("error_description %q, want it to say the parameter is repeated", desc)
			}
		}
		if got := lastAuthorisation(t, srv).Refreshes; got != 0 {
			t.Errorf("refreshes = %d, want 0: a refused request must not rotate", got)
		}
	})
}

// TestReview_LifetimesBounded checks that New refuses a lifetime the clock cannot hold
// (100 years), including a refresh-token TTL plus jitter that overflows time.Duration.
func TestReview_LifetimesBounded(t *testing.T) {
	const bound = 100 * 365 * 24 * time.Hour
	refused := map[string]emulator.Config{
		"RefreshTTLPlusJitterOverflows":  {RefreshTokenTTL: 2562000 * time.Hour, RefreshTokenJitter: 1000 * time.Hour},
		"RefreshTTLPlusJitterAboveBound": {RefreshTokenTTL: bound - time.Hour, RefreshTokenJitter: 2 * time.Hour},
		"RefreshTTLAboveBound":           {RefreshTokenTTL: bound + time.Second},
		"AccessTTLAboveBound":            {AccessTokenTTL: bound + time.Second},
		"AccessTTLMaxDuration":           {AccessTokenTTL: time.Duration(1<<63 - 1)},
		"CodeTTLAboveBound":              {CodeTTL: bound + time.Second},
	}
	for name, cfg := range refused {
		if _, err := emulator.New(cfg); err == nil {
			t.Errorf("%s: New(%+v) = nil error, want one", name, cfg)
		} else if !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: New: %v, want it to say the lifetime is too long", name, err)
		}
	}
	accepted := map[string]emulator.Config{
		"AccessTTLAtBound":            {AccessTokenTTL: bound},
		"RefreshTTLPlusJitterAtBound": {RefreshTokenTTL: bound - time.Hour, RefreshTokenJitter: time.Hour},
		"CodeTTLAtBound":              {CodeTTL: bound},
	}
	for name, cfg := range accepted {
		if _, err := emulator.New(cfg); err != nil {
			t.Errorf("%s: New: %v, want it accepted", name, err)
		}
	}
}

// TestReview_RecheckAcrossReset checks that an API call whose token a reset forgot while
// the call waited in a latency is refused as unknown, and leaves the new ledger clean.
func TestReview_RecheckAcrossReset(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	done := holdAPICall(t, srv, tk.Access)
	srv.Reset()

	if r := await(t, "the API call", done); r.err != nil || r.status != http.StatusUnauthorized {
		t.Errorf("API call whose token was forgotten meanwhile: %d %v, want 401", r.status, r.err)
	}
	rep := srv.Report()
	if len(rep.Violations) != 0 || len(rep.Authorisations) != 0 {
		t.Errorf("after the reset: violations %v, authorisations %v; want none", rep.Violations, rep.Authorisations)
	}
}

// TestReview_IntrospectRetryAfterPerToken checks that a Retry-After from the introspection
// endpoint applies to the token it answered: another token may be introspected at once.
func TestReview_IntrospectRetryAfterPerToken(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	a, b := connect(t, srv), connect(t, srv)
	setFaults(t, srv, `{"introspect":{"script":["error_503"],"retry_after":"5s"}}`)
	if status, _, h := introspectAs(t, srv, testClient, a.Access); status != http.StatusServiceUnavailable || h.Get("Retry-After") != "5" {
		t.Fatalf("introspect A: %d, Retry-After %q; want 503 and 5", status, h.Get("Retry-After"))
	}
	if status, body, _ := introspectAs(t, srv, testClient, b.Access); status != http.StatusOK || body["active"] != true {
		t.Fatalf("introspect B at once: %d %v, want 200 active", status, body)
	}
	if v := flaggedViolations(srv); len(v) != 0 {
		t.Fatalf("violations after introspecting another token: %v, want none", v)
	}
	if status, _, _ := introspectAs(t, srv, testClient, a.Access); status != http.StatusOK {
		t.Fatalf("introspect A again at once: %d, want 200 (the script is spent)", status)
	}
	if diff := cmp.Diff([]flagged{{emulator.RuleRetryTooSoon, false}}, flaggedViolations(srv)); diff != "" {
		t.Errorf("violations after the early retry (-want +got):\n%s", diff)
	}
}
