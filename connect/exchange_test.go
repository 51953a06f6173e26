package connect_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

func TestFlow_Callback_Exchange(t *testing.T) {
	back := connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"}
	tests := []struct {
		name string
		// fail, if set, makes the exchange fail, between the redirect and
		// the callback.
		fail         func(t *testing.T, e *env)
		edit         func(e *env)
		code         tokenkeeper.Code
		providerCode string // "" when the provider's answer is not an OAuth error
		status       int    // the token endpoint's status; 0 when no response came
		violations   int
	}{
		{
			name: "ErrCodeExpired",
			fail: func(t *testing.T, e *env) {
				if _, err := e.srv.Advance(emulator.DefaultCodeTTL + time.Second); err != nil {
					t.Fatal(err)
				}
			},
			code: tokenkeeper.CodeInvalid, providerCode: "invalid_grant", status: http.StatusBadRequest,
		},
		{
			name: "ErrClientSecret",
			edit: func(e *env) { e.cfg.ClientSecret = tokenkeeper.NewSecret("not the secret") },
			code: tokenkeeper.CodeUnauthorized, providerCode: "invalid_client", status: http.StatusUnauthorized,
		},
		{
			name: "ErrProviderUnavailable",
			fail: func(t *testing.T, e *env) {
				e.setFaults(t, emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault503}}})
			},
			code: tokenkeeper.CodeUnavailable, providerCode: "temporarily_unavailable", status: http.StatusServiceUnavailable,
		},
		{
			name: "ErrConnectionDropped",
			fail: func(t *testing.T, e *env) {
				e.setFaults(t, emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultDropBefore}}})
			},
			code: tokenkeeper.CodeUnavailable,
		},
		{
			name: "ErrResponseGarbled",
			fail: func(t *testing.T, e *env) {
				e.setFaults(t, emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultGarbleAfterCommit}}})
			},
			code: tokenkeeper.CodeUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, autoApprove, tt.edit)
			q := e.browse(t, e.begin(t, back))
			if tt.fail != nil {
				tt.fail(t, e)
			}
			_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
			fe := wantFlowError(t, err, connect.ReasonExchangeFailed, tt.code)
			if fe.ReturnURL != "/back" || fe.ConnectionID != "acme" || fe.ProviderCode != tt.providerCode {
				t.Errorf("got ReturnURL %q, ConnectionID %q, ProviderCode %q; want /back, acme, %q",
					fe.ReturnURL, fe.ConnectionID, fe.ProviderCode, tt.providerCode)
			}
			var re *oauth2.RetrieveError
			switch {
			case tt.status == 0 && errors.As(err, &re):
				t.Errorf("a RetrieveError is in the chain although no answer came: %v", re)
			case tt.status != 0 && !errors.As(err, &re):
				t.Errorf("no *oauth2.RetrieveError in the chain of %v", err)
			case tt.status != 0 && (re.Response.StatusCode != tt.status || re.ErrorCode != tt.providerCode):
				t.Errorf("RetrieveError %d %q, want %d %q", re.Response.StatusCode, re.ErrorCode, tt.status, tt.providerCode)
			}
			checkNoFlowSecrets(t, err, q.Get("code"), q.Get("state"))
			if n := len(e.keeper.Grants()); n != 0 {
				t.Errorf("Keeper.Connect called %d times, want 0", n)
			}
			if v := e.violations(); len(v) != tt.violations {
				t.Errorf("violations %v, want %d", v, tt.violations)
			}
		})
	}

	// A code presented twice (here, by a second flow that got hold of the
	// first one's code) is invalid_grant, and Pleo revokes what it bought.
	t.Run("ErrCodeReused", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		first, _, err := e.run(t, back)
		if err != nil {
			t.Fatalf("first flow: %v", err)
		}
		second := e.browse(t, e.begin(t, back))
		second.Set("code", first.Get("code"))
		_, err = e.flow.Callback(context.Background(), connect.CallbackRequest{Query: second})
		fe := wantFlowError(t, err, connect.ReasonExchangeFailed, tokenkeeper.CodeInvalid)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("want an invalid_grant RetrieveError in the chain of %v", err)
		}
		if fe.ProviderCode != "invalid_grant" || fe.ReturnURL != "/back" {
			t.Errorf("ProviderCode %q, ReturnURL %q; want invalid_grant, /back", fe.ProviderCode, fe.ReturnURL)
		}
		checkNoFlowSecrets(t, err, first.Get("code"), second.Get("state"))
	})
}

// checkNoFlowSecrets checks that neither the error's text nor its user
// message holds the code or the state.
func checkNoFlowSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	noSecrets(t, "the error", err.Error(), secrets...)
	noSecrets(t, "the user message", tokenkeeper.ErrorMessage(err), secrets...)
}

func TestFlow_Callback_Introspect(t *testing.T) {
	// However introspection fails, the connection is made, without a
	// subject.
	// (Not drop_before: net/http retries a GET whose reused connection
	// closes.)
	for _, fault := range []string{emulator.Fault500, emulator.Fault429, emulator.FaultGarbleAfterCommit} {
		t.Run("ErrAPI_"+fault, func(t *testing.T) {
			e := newEnv(t, autoApprove, nil)
			e.setFaults(t, emulator.Faults{emulator.EndpointAPI: {Script: []string{fault}}})
			_, res, err := e.run(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"})
			if err != nil {
				t.Fatalf("Callback: %v", err)
			}
			if res.Connection.Subject != "" || res.Connection.ID != "acme" || res.ReturnURL != "/back" {
				t.Errorf("Result %+v, %+v; want acme without a subject, returning to /back", res, res.Connection)
			}
			checkIntrospectWarning(t, e)
		})
	}
}

// checkIntrospectWarning checks that the log warns about the subject, and
// holds no token, and that the keeper got one grant, without a subject.
func checkIntrospectWarning(t *testing.T, e *env) {
	t.Helper()
	logs := e.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "subject") {
		t.Errorf("no warning about the subject in the log:\n%s", logs)
	}
	g := e.keeper.Grants()
	if len(g) != 1 {
		t.Fatalf("Keeper.Connect called %d times, want 1", len(g))
	}
	if g[0].Subject != "" {
		t.Errorf("the grant has subject %q, although introspection failed", g[0].Subject)
	}
	noSecrets(t, "the log", logs, g[0].Tokens.AccessToken.Reveal(), g[0].Tokens.RefreshToken.Reveal())
}
