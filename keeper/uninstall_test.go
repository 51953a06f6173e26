package keeper_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// uninstall calls Uninstall with a test deadline.
func (e *env) uninstall(k *keeper.Keeper, id tokenkeeper.ConnectionID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return k.Uninstall(ctx, id)
}

// refreshToken opens the stored refresh token of id.
func (e *env) refreshToken(id tokenkeeper.ConnectionID) string {
	e.t.Helper()
	rec := e.record(id)
	b, err := e.ring.Open(rec.Tokens.RefreshToken, tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(id), tokenkeeper.FieldRefreshToken))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// presentRefreshToken sends refresh to the token endpoint, as a client
// that kept a copy would, and returns the RFC 6749 error code ("" if it
// worked).
func (e *env) presentRefreshToken(refresh string) string {
	e.t.Helper()
	cfg := oauth2.Config{ClientID: e.client.ID, ClientSecret: e.client.Secret,
		Endpoint: oauth2.Endpoint{TokenURL: e.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	_, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: refresh}).Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return ""
}

func TestKeeper_Uninstall(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		refresh := e.refreshToken("acme")
		if err := e.uninstall(e.k, "acme"); err != nil {
			t.Fatalf("Uninstall: %v", err)
		}
		// Uninstall leaves the connection to the caller's Disconnect.
		if r := e.record("acme"); r.State != tokenkeeper.StateActive {
			t.Errorf("after Uninstall the connection is %s, want active until Disconnect", r.State)
		}
		if err := e.k.Disconnect(context.Background(), "acme", "uninstalled"); err != nil {
			t.Fatal(err)
		}
		a := e.srv.Report().Authorisations[0]
		if a.State != emulator.AuthorisationRevoked || a.RevokedReason != emulator.RevokedInstallationDeleted {
			t.Errorf("authorisation %s is %s (%s), want revoked by the installation's deletion", a.ID, a.State, a.RevokedReason)
		}
		if code := e.presentRefreshToken(refresh); code != "invalid_grant" {
			t.Errorf("the old refresh token: %q, want invalid_grant", code)
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("violations: %v", v)
		}
	})
	t.Run("RevokedByUserAlready", func(t *testing.T) {
		// The user uninstalled the app in Pleo: the API call gets a 401,
		// the one guarded refresh gets invalid_grant, and there is nothing
		// left to revoke.
		e := newEnv(t)
		e.connect("acme")
		if err := e.srv.Revoke(e.srv.Report().Authorisations[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := e.uninstall(e.k, "acme"); err != nil {
			t.Fatalf("Uninstall: %v", err)
		}
		if r := e.record("acme"); r.State != tokenkeeper.StateReconnectRequired {
			t.Errorf("the connection is %s, want reconnect_required", r.State)
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("violations: %v", v)
		}
	})
	t.Run("GrantDiesOnRefresh", func(t *testing.T) {
		// The token needs a refresh first, and the refresh finds the grant
		// revoked: nothing to revoke, and no API call.
		e := newEnv(t)
		e.connect("acme")
		if err := e.srv.Revoke(e.srv.Report().Authorisations[0].ID); err != nil {
			t.Fatal(err)
		}
		e.expire("acme")
		if err := e.uninstall(e.k, "acme"); err != nil {
			t.Fatalf("Uninstall: %v", err)
		}
		if n := e.apiCount("ok") + e.apiCount("invalid_token"); n != 0 {
			t.Errorf("%d API calls, want none", n)
		}
		if v := e.violations(); len(v) != 0 {
			t.Errorf("violations: %v", v)
		}
	})
	t.Run("GrantAlreadyDead", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		if err := e.k.Disconnect(context.Background(), "acme", ""); err != nil {
			t.Fatal(err)
		}
		before := e.apiCount("ok") + e.apiCount("invalid_token")
		if err := e.uninstall(e.k, "acme"); err != nil {
			t.Fatalf("Uninstall of a disconnected connection: %v", err)
		}
		if after := e.apiCount("ok") + e.apiCount("invalid_token"); after != before {
			t.Errorf("Uninstall of a disconnected connection called the API")
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		e := newEnv(t)
		if err := e.uninstall(e.k, "nobody"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("Uninstall(nobody): %v, want not found", err)
		}
		if err := e.uninstall(e.k, "bad id"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("Uninstall(bad id): %v, want invalid", err)
		}
	})
	t.Run("ProviderFails", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		e.faults(emulator.Faults{emulator.EndpointAPI: {Script: []string{emulator.Fault500}}})
		err := e.uninstall(e.k, "acme")
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable || !strings.Contains(err.Error(), "500") {
			t.Errorf("Uninstall with the API failing: %v, want unavailable naming 500", err)
		}
		if a := e.srv.Report().Authorisations[0]; a.State == emulator.AuthorisationRevoked {
			t.Error("the authorisation was revoked by a failed call")
		}
	})
	t.Run("Statuses", func(t *testing.T) {
		for _, tc := range []struct {
			status int
			want   tokenkeeper.Code
		}{
			{http.StatusNoContent, ""},
			{http.StatusOK, ""},
			{http.StatusNotFound, ""}, // already gone
			{http.StatusForbidden, tokenkeeper.CodeUnavailable},
			{http.StatusTooManyRequests, tokenkeeper.CodeUnavailable},
			{http.StatusBadGateway, tokenkeeper.CodeUnavailable},
		} {
			t.Run(http.StatusText(tc.status), func(t *testing.T) {
				e := newEnv(t, func(c *keeper.Config, _ *emulator.Config) {
					c.HTTPClient = &http.Client{Transport: cannedDelete{tc.status}}
				})
				e.connect("acme")
				err := e.uninstall(e.k, "acme")
				if got := tokenkeeper.ErrorCode(err); got != tc.want {
					t.Fatalf("Uninstall answered %d: %v, want code %q", tc.status, err, tc.want)
				}
				if err != nil && (strings.Contains(err.Error(), "secret body") || !strings.Contains(tokenkeeper.ErrorMessage(err), http.StatusText(tc.status))) {
					t.Errorf("error %q: want the status named and the body left out", err)
				}
			})
		}
	})
}

// cannedDelete answers DELETE /v1/installations/me with its status and a
// body that must never reach an error; everything else goes through.
type cannedDelete struct{ status int }

func (c cannedDelete) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodDelete || !strings.HasSuffix(req.URL.Path, "/v1/installations/me") {
		return http.DefaultTransport.RoundTrip(req)
	}
	if !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		return nil, errors.New("no bearer token")
	}
	return &http.Response{StatusCode: c.status, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(`{"message":"secret body"}`))}, nil
}
