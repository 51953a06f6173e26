package connect_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

func TestFlow_Callback(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		// Every response moves the clock an hour on, so an expiry counted
		// from the response's arrival would be an hour late.
		e := newEnv(t, autoApprove, func(e *env) {
			e.cfg.HTTPClient = &http.Client{Transport: stepTransport{Clock: e.clock, Step: time.Hour}}
		})
		authURL := e.begin(t, connect.BeginRequest{ConnectionID: "acme-1", ReturnURL: "/settings?tab=pleo"})
		q := e.browse(t, authURL)
		sent := e.clock.Now() // nothing has been sent through the stepping client yet
		res, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		if err != nil {
			t.Fatalf("Callback: %v", err)
		}

		// The scopes are the response's (the emulator sorts them), not
		// those asked for.
		granted := []string{"export-jobs:read", "users:read"}
		want := &connect.Result{
			Connection: &tokenkeeper.Connection{
				ID: "acme-1", Provider: tokenkeeper.ProviderCustom, Subject: companyNordlys,
				Scopes: granted, State: tokenkeeper.StateActive, Generation: 1,
			},
			ReturnURL: "/settings?tab=pleo",
		}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("Result (-want +got):\n%s", diff)
		}
		grants := e.keeper.Grants()
		if len(grants) != 1 {
			t.Fatalf("Keeper.Connect got %d grants, want 1", len(grants))
		}
		g := grants[0]
		if g.Tokens.AccessToken.IsZero() || g.Tokens.RefreshToken.IsZero() {
			t.Errorf("the grant lacks a token: %+v", g.Tokens)
		}
		// The subject was learned before the grant was stored, and goes
		// with it.
		wantGrant := tokenkeeper.Grant{
			ConnectionID: "acme-1", Provider: tokenkeeper.ProviderCustom, Scopes: granted, Subject: companyNordlys,
			Tokens: tokenkeeper.TokenSet{
				AccessToken: g.Tokens.AccessToken, RefreshToken: g.Tokens.RefreshToken,
				// expires_in (15 minutes) counts from when the request was
				// sent, not from when the answer came an hour later.
				Expiry: sent.Add(emulator.DefaultAccessTokenTTL),
				Scope:  "export-jobs:read users:read",
			},
		}
		if diff := cmp.Diff(wantGrant, g); diff != "" {
			t.Errorf("Grant (-want +got):\n%s", diff)
		}
		// The access token is real: the API takes it.
		req, _ := http.NewRequest(http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
		req.Header.Set("Authorization", "Bearer "+g.Tokens.AccessToken.Reveal())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the API answered the new access token with %d", resp.StatusCode)
		}
		// PKCE, client_secret_basic and state were all done right.
		if v := e.violations(); len(v) != 0 {
			t.Errorf("the emulator saw violations: %v", v)
		}
		noSecrets(t, "the log", e.logs.String(), g.Tokens.AccessToken.Reveal(),
			g.Tokens.RefreshToken.Reveal(), q.Get("code"), q.Get("state"), e.cfg.ClientSecret.Reveal())
		if !strings.Contains(e.logs.String(), "connected") {
			t.Errorf("the log has no line for the connection:\n%s", e.logs)
		}
	})

	t.Run("Subject", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		_, res, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", Subject: companyFjord})
		if err != nil {
			t.Fatalf("Callback: %v", err)
		}
		if res.Connection.Subject != companyFjord {
			t.Errorf("Subject = %q, want the preselected %q", res.Connection.Subject, companyFjord)
		}
	})

	t.Run("Reconnect", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		for range 2 {
			if _, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme"}); err != nil {
				t.Fatalf("Callback: %v", err)
			}
		}
		grants := e.keeper.Grants()
		if len(grants) != 2 || grants[0].ConnectionID != "acme" || grants[1].ConnectionID != "acme" {
			t.Fatalf("grants = %+v, want two for acme", grants)
		}
		if grants[0].Tokens.AccessToken.Equal(grants[1].Tokens.AccessToken) {
			t.Error("the reconnect handed the keeper the old access token")
		}
	})

	t.Run("ErrStateReplayed", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		q, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		if err != nil {
			t.Fatalf("first Callback: %v", err)
		}
		_, err = e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		fe := wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
		if fe.ReturnURL != "" || fe.ConnectionID != "" {
			t.Errorf("a replay got ReturnURL %q, ConnectionID %q; want none", fe.ReturnURL, fe.ConnectionID)
		}
		if n := len(e.keeper.Grants()); n != 1 {
			t.Errorf("Keeper.Connect called %d times, want 1", n)
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("the replay reached the provider: %v", v)
		}
	})

	t.Run("ErrStateReplayedConcurrently", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme"}))
		errs := make(chan error, 8)
		for range cap(errs) {
			go func() {
				_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
				errs <- err
			}()
		}
		ok := 0
		for range cap(errs) {
			if err := <-errs; err == nil {
				ok++
			} else {
				wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
			}
		}
		if ok != 1 {
			t.Errorf("%d concurrent callbacks with one state succeeded, want 1", ok)
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("the code was presented more than once: %v", v)
		}
	})

	t.Run("ErrStateExpired", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"}))
		e.clock.Advance(connect.DefaultSessionTTL)
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		fe := wantFlowError(t, err, connect.ReasonStateExpired, tokenkeeper.CodeInvalid)
		if fe.ReturnURL != "/back" || fe.ConnectionID != "acme" {
			t.Errorf("got ReturnURL %q, ConnectionID %q; want /back and acme from the session", fe.ReturnURL, fe.ConnectionID)
		}
		if n := len(e.keeper.Grants()); n != 0 {
			t.Errorf("Keeper.Connect called %d times, want 0", n)
		}
	})

	t.Run("SessionTTL", func(t *testing.T) {
		e := newEnv(t, autoApprove, func(e *env) { e.cfg.SessionTTL = time.Hour })
		q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme"}))
		e.clock.Advance(59 * time.Minute)
		if _, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q}); err != nil {
			t.Fatalf("Callback within SessionTTL: %v", err)
		}
	})

	t.Run("ErrDenied", func(t *testing.T) {
		e := newEnv(t, emulator.Config{}, nil) // the consent page, and a user who says no
		authURL := e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		q := e.deny(t, authURL)
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		fe := wantFlowError(t, err, connect.ReasonDenied, tokenkeeper.CodeForbidden)
		want := connect.FlowError{Reason: connect.ReasonDenied, ConnectionID: "acme", ReturnURL: "/back",
			ProviderCode: "access_denied", Description: "the user denied the request", Err: fe.Err}
		if diff := cmp.Diff(want, *fe); diff != "" {
			t.Errorf("FlowError (-want +got):\n%s", diff)
		}
	})

	t.Run("ErrProviderError", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		e.setFaults(t, emulator.Faults{emulator.EndpointAuthorize: {Script: []string{emulator.Fault503}}})
		_, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		fe := wantFlowError(t, err, connect.ReasonProviderError, tokenkeeper.CodeUnavailable)
		if fe.ProviderCode != "temporarily_unavailable" || fe.ReturnURL != "/back" {
			t.Errorf("ProviderCode %q, ReturnURL %q; want temporarily_unavailable and /back", fe.ProviderCode, fe.ReturnURL)
		}
	})

	t.Run("ErrInvalidScope", func(t *testing.T) {
		e := newEnv(t, autoApprove, func(e *env) { e.cfg.Scopes = []string{"no-such:scope"} })
		_, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme"})
		fe := wantFlowError(t, err, connect.ReasonProviderError, tokenkeeper.CodeInvalid)
		if fe.ProviderCode != "invalid_scope" {
			t.Errorf("ProviderCode = %q, want invalid_scope", fe.ProviderCode)
		}
	})

	t.Run("ErrMissingCode", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		e.setFaults(t, emulator.Faults{emulator.EndpointAuthorize: {Script: []string{emulator.FaultMissingCode}}})
		q, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		fe := wantFlowError(t, err, connect.ReasonMissingCode, tokenkeeper.CodeInvalid)
		if fe.ReturnURL != "/back" || fe.ConnectionID != "acme" {
			t.Errorf("got ReturnURL %q, ConnectionID %q; want /back and acme", fe.ReturnURL, fe.ConnectionID)
		}
		// The failed flow spent its state.
		_, err = e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
	})

	t.Run("ErrWrongState", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		e.setFaults(t, emulator.Faults{emulator.EndpointAuthorize: {Script: []string{emulator.FaultWrongState}}})
		q, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		fe := wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
		if fe.ReturnURL != "" || fe.ConnectionID != "" {
			t.Errorf("got ReturnURL %q, ConnectionID %q for a forged state; want none", fe.ReturnURL, fe.ConnectionID)
		}
		if q.Get("code") == "" {
			t.Fatal("the wrong_state fault sent no code; the test proves nothing")
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("the code of a forged state was exchanged: %v", v)
		}
		if n := len(e.keeper.Grants()); n != 0 {
			t.Errorf("Keeper.Connect called %d times, want 0", n)
		}
	})

	t.Run("ErrStateForged", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		real := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"}))
		forged := make([]byte, 32)
		_, _ = rand.Read(forged)
		for name, q := range map[string]url.Values{
			"random":      {"state": {base64.RawURLEncoding.EncodeToString(forged)}, "code": real["code"]},
			"malformed":   {"state": {"not-a-state"}, "code": real["code"]},
			"padded":      {"state": {real.Get("state") + "="}, "code": real["code"]},
			"error param": {"state": {"x"}, "error": {"access_denied"}},
		} {
			_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
			fe := wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
			if fe.ReturnURL != "" || fe.ConnectionID != "" || fe.ProviderCode != "" {
				t.Errorf("%s: a forged state got %+v", name, fe)
			}
		}
		// The genuine state still works.
		if _, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: real}); err != nil {
			t.Errorf("Callback with the genuine state after forgeries: %v", err)
		}
	})

	t.Run("ErrStateMissing", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		real := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"}))
		for name, q := range map[string]url.Values{
			"nil":      nil,
			"no state": {"code": real["code"]},
			"empty":    {"state": {""}, "code": real["code"]},
			"repeated": {"state": {real.Get("state"), real.Get("state")}, "code": real["code"]},
			"error":    {"error": {"access_denied"}},
		} {
			_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
			fe := wantFlowError(t, err, connect.ReasonStateMissing, tokenkeeper.CodeInvalid)
			if fe.ReturnURL != "" || fe.ConnectionID != "" {
				t.Errorf("%s: got %+v, want no ReturnURL or ConnectionID", name, fe)
			}
		}
	})

	t.Run("ErrKeeperConnect", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		e.keeper.ConnectFunc = func(context.Context, tokenkeeper.Grant) (*tokenkeeper.Connection, error) {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "database is busy")
		}
		_, _, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
		fe := wantFlowError(t, err, connect.ReasonInternal, tokenkeeper.CodeUnavailable)
		if fe.ReturnURL != "/back" {
			t.Errorf("ReturnURL = %q, want /back", fe.ReturnURL)
		}
		// One write was attempted, with the tokens and the subject.
		if g := e.keeper.Grants(); len(g) != 1 || g[0].Subject != companyNordlys {
			t.Errorf("Keeper.Connect got %+v; want one grant, for %s", g, companyNordlys)
		}
	})

	// Two flows for one connection id (two tabs, a retry, two replicas
	// behind a load balancer) finish at about the same time, for two
	// companies. Flow A learns its subject while flow B finishes. Whoever
	// writes last, the stored tokens and subject must be one flow's pair:
	// otherwise the integrator books company B's data as company A's.
	t.Run("ConcurrentReconnectsKeepSubjectWithTokens", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		k, err := keeper.New(keeper.Config{
			Store: e.store, Sealer: e.sealer, Provider: e.cfg.Provider,
			ClientID: e.cfg.ClientID, ClientSecret: e.cfg.ClientSecret,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })

		gate := newGateIntrospect()
		cfgA, cfgB := e.cfg, e.cfg
		cfgA.Keeper, cfgB.Keeper = k, k
		cfgA.Now, cfgB.Now = nil, nil // the keeper runs on the real clock
		cfgA.HTTPClient = &http.Client{Transport: gate}
		flowA, err := connect.New(cfgA)
		if err != nil {
			t.Fatal(err)
		}
		flowB, err := connect.New(cfgB)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		begin := func(f *connect.Flow, subject string) string {
			u, err := f.Begin(ctx, connect.BeginRequest{ConnectionID: "acme", Subject: subject})
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		qA := e.browse(t, begin(flowA, companyNordlys))
		qB := e.browse(t, begin(flowB, companyFjord))

		doneA := make(chan error, 1)
		go func() {
			_, err := flowA.Callback(ctx, connect.CallbackRequest{Query: qA})
			doneA <- err
		}()
		<-gate.entered // A has its Nordlys tokens and is learning their subject
		if _, err := flowB.Callback(ctx, connect.CallbackRequest{Query: qB}); err != nil {
			t.Fatalf("flow B: %v", err)
		}
		close(gate.release)
		if err := <-doneA; err != nil {
			t.Fatalf("flow A: %v", err)
		}

		conn, err := k.Connection(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := k.Token(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		// Ask the provider whom the stored token is really for.
		req, _ := http.NewRequest(http.MethodGet, e.srv.APIURL+"/v1/introspect", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Value.Reveal())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			SubjectURN string `json:"subjectURN"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.SubjectURN != companyNordlys {
			t.Errorf("the stored token is for %q; want flow A's %q, which wrote last", body.SubjectURN, companyNordlys)
		}
		if conn.Subject != body.SubjectURN {
			t.Errorf("connection acme records subject %q, but its stored token is for %q", conn.Subject, body.SubjectURN)
		}
	})
}

// consentRequest finds the consent request's id in the emulator's page.
var consentRequest = regexp.MustCompile(`name="request" value="([^"]+)"`)

// deny opens the consent page at authURL, denies, and returns the query of
// the redirect back.
func (e *env) deny(t testing.TB, authURL string) url.Values {
	t.Helper()
	resp, err := noRedirects.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	page := new(strings.Builder)
	_, _ = io.Copy(page, resp.Body)
	resp.Body.Close()
	m := consentRequest.FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("no consent request on the page (status %d):\n%s", resp.StatusCode, page)
	}
	resp, err = noRedirects.PostForm(e.srv.URL+"/oauth/authorize/consent",
		url.Values{"request": {m[1]}, "decision": {"deny"}})
	if err != nil {
		t.Fatalf("POST consent: %v", err)
	}
	defer resp.Body.Close()
	return e.redirectQuery(t, resp)
}
