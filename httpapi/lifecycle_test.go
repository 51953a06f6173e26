package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func emulatorFaults503() emulator.Faults {
	return emulator.Faults{
		emulator.EndpointToken: {Error503: 1},
		emulator.EndpointAPI:   {Error503: 1},
	}
}

// audited returns the actions and details of the audit entries about id,
// newest first, but for the connect sessions that connected it.
func (e *env) audited(t testing.TB, id tokenkeeper.ConnectionID) []string {
	t.Helper()
	entries, err := e.store.ListAudit(t.Context(), tokenkeeper.AuditFilter{ConnectionID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		if en.Action == "connect_session.create" {
			continue
		}
		out = append(out, en.Action+" "+en.Detail)
	}
	return out
}

func TestServer_DeleteConnection(t *testing.T) {
	e := newEnv(t)
	t.Run("OK", func(t *testing.T) {
		e.connect(t, "acme")
		r := e.do(t, req{method: "DELETE", path: "/v1/connections/acme", key: e.admin})
		want(t, r, http.StatusOK, "")
		var c httpapi.Connection
		r.decode(t, &c)
		if c.State != tokenkeeper.StateDisconnected || c.AccessTokenExpiresAt != nil {
			t.Errorf("connection %+v", c)
		}
		if rec := e.record(t, "acme"); !rec.Tokens.AccessToken.IsZero() {
			t.Error("the tokens are not wiped")
		}
		if got := e.audited(t, "acme"); len(got) != 1 || got[0] != "connection.delete revoke=false" {
			t.Errorf("audit %q", got)
		}
	})
	t.Run("Revoke", func(t *testing.T) {
		e.connect(t, "beta")
		r := e.do(t, req{method: "DELETE", path: "/v1/connections/beta?revoke=true", key: e.admin})
		want(t, r, http.StatusOK, "")
		auths := e.srv.Report().Authorisations
		if a := auths[len(auths)-1]; a.RevokedAt == nil {
			t.Errorf("the grant is not revoked at the provider: %+v", a)
		}
		// Newest first: the revocation is recorded as soon as the provider
		// confirmed it, then the disconnect.
		if got := e.audited(t, "beta"); len(got) != 2 || got[0] != "connection.delete revoke=true" || got[1] != "connection.uninstall revoked at the provider" {
			t.Errorf("audit %q", got)
		}
	})
	t.Run("RevokeFailsKeepsTokens", func(t *testing.T) {
		e.connect(t, "gamma")
		e.faults503(t)
		r := e.do(t, req{method: "DELETE", path: "/v1/connections/gamma?revoke=true", key: e.admin})
		want(t, r, http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
		if rec := e.record(t, "gamma"); rec.State != tokenkeeper.StateActive || rec.Tokens.AccessToken.IsZero() {
			t.Errorf("after a failed revoke the connection is %s with tokens %v", rec.State, !rec.Tokens.AccessToken.IsZero())
		}
		if got := e.audited(t, "gamma"); len(got) != 0 {
			t.Errorf("a failed delete is audited: %q", got)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		want(t, e.do(t, req{method: "DELETE", path: "/v1/connections/nobody", key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	t.Run("BadRevoke", func(t *testing.T) {
		want(t, e.do(t, req{method: "DELETE", path: "/v1/connections/acme?revoke=yes", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("BadID", func(t *testing.T) {
		want(t, e.do(t, req{method: "DELETE", path: "/v1/connections/a%20b", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("AuditFailureStands", func(t *testing.T) {
		e.connect(t, "delta")
		restore := e.faults.inject("AppendAudit", errInternal)
		r := e.do(t, req{method: "DELETE", path: "/v1/connections/delta", key: e.admin})
		restore()
		want(t, r, http.StatusOK, "")
		if n := len(e.logLines(t, "http: the action succeeded but its audit entry was not recorded")); n != 1 {
			t.Errorf("%d error lines for the lost audit entry, want 1", n)
		}
	})
}

func TestServer_Refresh(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	t.Run("OK", func(t *testing.T) {
		gen := e.record(t, "acme").Generation
		r := e.do(t, req{method: "POST", path: "/v1/connections/acme/refresh", key: e.admin})
		want(t, r, http.StatusOK, "")
		e.harvest(t)
		var c httpapi.Connection
		r.decode(t, &c)
		if c.Generation <= gen || c.LastRefreshAt == nil {
			t.Errorf("after a forced refresh: generation %d (was %d), last_refresh_at %v", c.Generation, gen, c.LastRefreshAt)
		}
		if got := e.audited(t, "acme"); len(got) != 1 || got[0] != "connection.refresh " {
			t.Errorf("audit %q", got)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/nobody/refresh", key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	t.Run("BadID", func(t *testing.T) {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/a%20b/refresh", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("ProviderDown", func(t *testing.T) {
		e.faults503(t)
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/acme/refresh", key: e.admin}), http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
	})
}

func TestServer_Prune(t *testing.T) {
	e := newEnv(t)
	for _, id := range []tokenkeeper.ConnectionID{"old", "kept"} {
		e.connect(t, id)
	}
	want(t, e.do(t, req{method: "DELETE", path: "/v1/connections/old", key: e.admin}), http.StatusOK, "")
	if _, err := e.srv.Advance(retention + 1); err != nil {
		t.Fatal(err)
	}
	prune := func(t *testing.T, q string) httpapi.PruneResult {
		r := e.do(t, req{method: "POST", path: "/v1/connections/prune" + q, key: e.admin})
		want(t, r, http.StatusOK, "")
		var p httpapi.PruneResult
		r.decode(t, &p)
		return p
	}
	t.Run("DryRun", func(t *testing.T) {
		p := prune(t, "?dry_run=true")
		if !p.DryRun || len(p.Pruned) != 1 || p.Pruned[0].ID != "old" || p.Pruned[0].State != tokenkeeper.StateDisconnected {
			t.Errorf("dry run %+v", p)
		}
		e.record(t, "old") // still there
		if got := e.audited(t, "old"); len(got) != 1 {
			t.Errorf("a dry run is audited: %q", got)
		}
	})
	t.Run("OK", func(t *testing.T) {
		p := prune(t, "")
		if p.DryRun || len(p.Pruned) != 1 || p.Pruned[0].ID != "old" {
			t.Errorf("prune %+v", p)
		}
		if _, err := e.store.GetConnection(t.Context(), "old"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("after prune: %v", err)
		}
		if got := e.audited(t, "old"); len(got) != 2 || got[0] != "connection.prune retention=1h0m0s" {
			t.Errorf("audit %q", got)
		}
		if p := prune(t, "?dry_run=false"); len(p.Pruned) != 0 || p.Pruned == nil {
			t.Errorf("second prune %+v", p)
		}
	})
	t.Run("BadDryRun", func(t *testing.T) {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/prune?dry_run=1", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("NotOnGet", func(t *testing.T) {
		// GET reads the connection named "prune".
		want(t, e.do(t, req{method: "GET", path: "/v1/connections/prune", key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
}
