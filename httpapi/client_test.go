package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func TestClient(t *testing.T) {
	e := newEnv(t)
	admin, tokens := e.apiClient(e.admin), e.apiClient(e.tokens)
	e.connect(t, "acme")
	e.connect(t, "beta")
	ctx := tctx(t)

	t.Run("GetConnection", func(t *testing.T) {
		c, err := tokens.GetConnection(tctx(t), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(httpapi.FromRecord(e.record(t, "acme")), c); diff != "" {
			t.Errorf("connection (-store +client):\n%s", diff)
		}
		_, err = tokens.GetConnection(tctx(t), "nobody")
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("GetConnection(nobody): %v, want not_found", err)
		}
		_, err = tokens.GetConnection(tctx(t), "..") // escaped, so it reaches the route, which refuses it
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("GetConnection(..): %v, want invalid", err)
		}
	})
	t.Run("ListConnections", func(t *testing.T) {
		l, err := tokens.ListConnections(tctx(t), httpapi.ListConnectionsOptions{Limit: 1})
		if err != nil || len(l.Connections) != 1 || l.Connections[0].ID != "acme" || l.NextCursor == "" {
			t.Fatalf("page 1: %+v, %v", l, err)
		}
		l, err = tokens.ListConnections(tctx(t), httpapi.ListConnectionsOptions{Limit: 1, Cursor: l.NextCursor, State: tokenkeeper.StateActive, Prefix: "b"})
		if err != nil || len(l.Connections) != 1 || l.Connections[0].ID != "beta" || l.NextCursor != "" {
			t.Fatalf("page 2: %+v, %v", l, err)
		}
		_, err = tokens.ListConnections(tctx(t), httpapi.ListConnectionsOptions{State: "bogus"})
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(tokenkeeper.ErrorMessage(err), "bogus") {
			t.Errorf("bad state: %v", err)
		}
	})
	t.Run("Token", func(t *testing.T) {
		tok, err := tokens.Token(tctx(t), "acme")
		if err != nil {
			t.Fatal(err)
		}
		e.secrets.add(tokenkeeper.FieldAccessToken, tok.Value.Reveal())
		if !tok.Valid(e.srv.Now()) || !tok.ExpiresAt.Equal(e.record(t, "acme").Tokens.ExpiresAt) {
			t.Errorf("token valid %v until %s", tok.Valid(e.srv.Now()), tok.ExpiresAt)
		}
		if _, err := tokens.Token(tctx(t), "nobody"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("Token(nobody): %v", err)
		}
		if _, err := e.apiClient(e.proxyKey).Token(tctx(t), "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeForbidden {
			t.Errorf("Token with a proxy key: %v", err)
		}
	})
	t.Run("TokenAfterRejection", func(t *testing.T) {
		stale, err := tokens.Token(tctx(t), "acme")
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := tokens.TokenAfterRejection(tctx(t), "acme", stale.Value)
		if err != nil {
			t.Fatal(err)
		}
		e.secrets.add(tokenkeeper.FieldAccessToken, fresh.Value.Reveal())
		if fresh.Value.Equal(stale.Value) || !fresh.Valid(e.srv.Now()) {
			t.Errorf("after a rejection: the same token %v, valid %v", fresh.Value.Equal(stale.Value), fresh.Valid(e.srv.Now()))
		}
		// Reporting the replaced token again returns the current one.
		again, err := tokens.TokenAfterRejection(tctx(t), "acme", stale.Value)
		if err != nil || !again.Value.Equal(fresh.Value) {
			t.Errorf("a second report: %v (the current token: %v)", err, again.Value.Equal(fresh.Value))
		}
		if _, err := tokens.TokenAfterRejection(tctx(t), "acme", tokenkeeper.Secret{}); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("a zero rejected token: %v, want invalid", err)
		}
		if _, err := tokens.TokenAfterRejection(tctx(t), "nobody", stale.Value); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("TokenAfterRejection(nobody): %v", err)
		}
	})
	t.Run("Refresh", func(t *testing.T) {
		c, err := admin.RefreshConnection(tctx(t), "acme")
		e.harvest(t)
		if err != nil || c.ID != "acme" || c.State != tokenkeeper.StateActive {
			t.Fatalf("refresh: %+v, %v", c, err)
		}
	})
	t.Run("ReconnectRequired", func(t *testing.T) {
		e.revokeAtProvider(t) // beta's grant
		if _, err := admin.RefreshConnection(tctx(t), "beta"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Errorf("refresh of a dead grant: %v", err)
		}
		if _, err := tokens.Token(tctx(t), "beta"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Errorf("token of a dead grant: %v", err)
		}
		if _, err := tokens.TokenAfterRejection(tctx(t), "beta", tokenkeeper.NewSecret("tok-0123456789")); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
			t.Errorf("a rejection for a dead grant: %v", err)
		}
	})
	t.Run("DeleteConnection", func(t *testing.T) {
		c, err := admin.DeleteConnection(tctx(t), "acme", true)
		if err != nil || c.State != tokenkeeper.StateDisconnected {
			t.Fatalf("delete: %+v, %v", c, err)
		}
		if _, err := admin.DeleteConnection(tctx(t), "nobody", false); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Errorf("delete unknown: %v", err)
		}
	})
	t.Run("Prune", func(t *testing.T) {
		p, err := admin.Prune(tctx(t), true)
		if err != nil || !p.DryRun || len(p.Pruned) != 0 {
			t.Fatalf("prune: %+v, %v", p, err)
		}
		if _, err := admin.Prune(tctx(t), false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ConnectSession", func(t *testing.T) {
		s, err := admin.CreateConnectSession(tctx(t), httpapi.ConnectSessionRequest{ConnectionID: "gamma", ReturnTo: "/x", ExpiresIn: 60})
		if err != nil || s.ConnectionID != "gamma" || !strings.HasPrefix(s.URL, "https://tk.example/base/connect/") {
			t.Fatalf("session %+v, %v", s, err)
		}
		e.secrets.add("link", strings.TrimPrefix(s.URL, "https://tk.example/base/connect/"))
		_, err = admin.CreateConnectSession(tctx(t), httpapi.ConnectSessionRequest{ConnectionID: "a b"})
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("bad id: %v", err)
		}
	})
	t.Run("APIKeys", func(t *testing.T) {
		created, err := admin.CreateAPIKey(tctx(t), "ops", []tokenkeeper.Scope{tokenkeeper.ScopeTokens})
		if err != nil {
			t.Fatal(err)
		}
		e.secrets.add("api key", created.Key.Reveal())
		if _, err := e.apiClient(created.Key).GetConnection(tctx(t), "acme"); err != nil {
			t.Errorf("the new key: %v", err)
		}
		keys, err := admin.ListAPIKeys(tctx(t))
		if err != nil || len(keys) != 4 || keys[3].ID != created.ID {
			t.Fatalf("list: %v, %v", keys, err)
		}
		k, err := admin.RevokeAPIKey(tctx(t), created.ID)
		if err != nil || k.RevokedAt == nil {
			t.Fatalf("revoke: %+v, %v", k, err)
		}
		if _, err := e.apiClient(created.Key).GetConnection(tctx(t), "acme"); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnauthorized {
			t.Errorf("the revoked key: %v", err)
		}
		// An HTTP-layer code reads as the nearest root code.
		_, err = admin.CreateAPIKey(tctx(t), strings.Repeat("n", httpapi.DefaultMaxBodyBytes), []tokenkeeper.Scope{"admin"})
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(tokenkeeper.ErrorMessage(err), "exceeds") {
			t.Errorf("too large: %v", err)
		}
	})
	t.Run("Audit", func(t *testing.T) {
		l, err := admin.ListAudit(tctx(t), httpapi.ListAuditOptions{ConnectionID: "acme", Limit: 1})
		if err != nil || len(l.Entries) != 1 || l.Entries[0].Action != "connection.delete" || l.NextCursor == "" {
			t.Fatalf("audit: %+v, %v", l, err)
		}
		l, err = admin.ListAudit(tctx(t), httpapi.ListAuditOptions{ConnectionID: "acme", Cursor: l.NextCursor})
		if err != nil || len(l.Entries) == 0 || l.Entries[0].Action != "connection.uninstall" {
			t.Fatalf("audit page 2: %+v, %v", l, err)
		}
	})
	_ = ctx
}

// TestClient_Errors: responses without an error body, transport failures
// and a missing BaseURL still give a *tokenkeeper.Error with a fitting code.
func TestClient_Errors(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
		want   tokenkeeper.Code
	}{
		{502, "<html>bad gateway</html>", tokenkeeper.CodeUnavailable},
		{504, "", tokenkeeper.CodeUnavailable},
		{404, "not json", tokenkeeper.CodeNotFound},
		{418, "", tokenkeeper.CodeInvalid},
		{500, "", tokenkeeper.CodeInternal},
		{400, `{"error":{"code":"some_future_code","message":"m"}}`, tokenkeeper.CodeInvalid},
		{405, `{"error":{"code":"method_not_allowed","message":"m"}}`, tokenkeeper.CodeInvalid},
		{415, `{"error":{"code":"unsupported_media_type","message":"m"}}`, tokenkeeper.CodeInvalid},
		{409, `{"error":{"code":"reconnect_required","message":"reconnect"}}`, tokenkeeper.CodeReconnectRequired},
		{200, `{"access_token":"","token_type":"Bearer"}`, tokenkeeper.CodeInternal},
		{200, `not json`, tokenkeeper.CodeInternal},
	} {
		t.Run(fmt.Sprint(tt.status, tt.body), func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			defer ts.Close()
			c := &httpapi.Client{BaseURL: mustURL(t, ts.URL), APIKey: tokenkeeper.NewSecret("k")}
			_, err := c.Token(t.Context(), "acme")
			var te *tokenkeeper.Error
			if !errorsAs(err, &te) || tokenkeeper.ErrorCode(err) != tt.want {
				t.Errorf("error %v (code %q), want a *tokenkeeper.Error with %q", err, tokenkeeper.ErrorCode(err), tt.want)
			}
		})
	}
	t.Run("Refused", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		ts.Close()
		c := &httpapi.Client{BaseURL: mustURL(t, ts.URL), APIKey: tokenkeeper.NewSecret("secret-key-1234")}
		_, err := c.GetConnection(t.Context(), "acme")
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnavailable || strings.Contains(fmt.Sprint(err), "secret-key-1234") {
			t.Errorf("refused: %v", err)
		}
	})
	t.Run("NoBaseURL", func(t *testing.T) {
		if _, err := (&httpapi.Client{}).ListAPIKeys(t.Context()); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("no BaseURL: %v", err)
		}
	})
	t.Run("PathPrefix", func(t *testing.T) {
		var got string
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Method + " " + r.URL.EscapedPath() + " " + r.URL.RawQuery + " " + r.Header.Get("Authorization")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"a b"}`)
		}))
		defer ts.Close()
		c := &httpapi.Client{BaseURL: mustURL(t, ts.URL+"/tk/"), APIKey: tokenkeeper.NewSecret("k")}
		if _, err := c.DeleteConnection(t.Context(), "a@b:c.", true); err != nil {
			t.Fatal(err)
		}
		if want := "DELETE /tk/v1/connections/a@b:c. revoke=true Bearer k"; got != want {
			t.Errorf("request %q, want %q", got, want)
		}
	})
}

// TestRedaction: the two values that carry a secret on the wire print and
// log it redacted; only their JSON holds it.
func TestRedaction(t *testing.T) {
	const secret = "tok-abcdefghijklmnop"
	tok := httpapi.TokenResponse{AccessToken: tokenkeeper.NewSecret(secret), TokenType: "Bearer", ExpiresAt: time.Unix(0, 0)}
	key := httpapi.CreatedAPIKey{Key: tokenkeeper.NewSecret(secret), APIKey: httpapi.APIKey{ID: "akx", Name: "n"}}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, v := range []any{tok, key, &tok, &key} {
		log.Info("value", "v", v)
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, secret) {
				t.Errorf("%s of %T prints the secret: %s", verb, v, s)
			}
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("slog JSON holds the secret: %s", logs.String())
	}
	for _, v := range []any{tok, key} {
		data, err := json.Marshal(v)
		if err != nil || !bytes.Contains(data, []byte(secret)) {
			t.Errorf("json of %T: %s, %v; want the secret in clear", v, data, err)
		}
	}
}
