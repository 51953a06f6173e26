package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func TestServer_APIKeys(t *testing.T) {
	e := newEnv(t)
	var created httpapi.CreatedAPIKey
	t.Run("Create", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/api-keys", key: e.admin,
			body: map[string]any{"name": "ci", "scopes": []string{"tokens", "proxy", "tokens"}}})
		want(t, r, http.StatusCreated, "")
		r.decode(t, &created)
		e.secrets.add("api key", created.Key.Reveal())
		if created.Name != "ci" || !strings.HasPrefix(created.Key.Reveal(), "tk_"+string(created.ID)+"_") ||
			!cmp.Equal(created.Scopes, []tokenkeeper.Scope{"tokens", "proxy"}) {
			t.Errorf("created %v", created)
		}
		var raw map[string]any
		r.decode(t, &raw)
		if len(raw) != 5 {
			t.Errorf("fields %v, want key, id, name, scopes, created_at", raw)
		}
		// The new key works, with its scopes.
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: created.Key}), http.StatusOK, "")
		want(t, e.do(t, req{method: "GET", path: "/v1/audit", key: created.Key}), http.StatusForbidden, tokenkeeper.CodeForbidden)
	})
	t.Run("List", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: "/v1/api-keys", key: e.admin})
		want(t, r, http.StatusOK, "")
		var l httpapi.APIKeyList
		r.decode(t, &l)
		var names []string
		for _, k := range l.APIKeys {
			names = append(names, k.Name)
			if k.RevokedAt != nil {
				t.Errorf("key %s is revoked", k.Name)
			}
		}
		if diff := cmp.Diff([]string{"admin", "tokens", "proxy", "ci"}, names); diff != "" {
			t.Errorf("names (-want +got):\n%s", diff)
		}
		if strings.Contains(string(r.body), "tk_") {
			t.Errorf("the list holds a key: %s", r.body)
		}
	})
	t.Run("Revoke", func(t *testing.T) {
		r := e.do(t, req{method: "DELETE", path: "/v1/api-keys/" + string(created.ID), key: e.admin})
		want(t, r, http.StatusOK, "")
		var k httpapi.APIKey
		r.decode(t, &k)
		if k.ID != created.ID || k.RevokedAt == nil {
			t.Errorf("revoked %+v", k)
		}
		// Again: not an error, the first time kept.
		r = e.do(t, req{method: "DELETE", path: "/v1/api-keys/" + string(created.ID), key: e.admin})
		want(t, r, http.StatusOK, "")
		var again httpapi.APIKey
		r.decode(t, &again)
		if !again.RevokedAt.Equal(*k.RevokedAt) {
			t.Errorf("revoked_at moved from %s to %s", k.RevokedAt, again.RevokedAt)
		}
		want(t, e.do(t, req{method: "GET", path: "/v1/connections", key: created.Key}), http.StatusUnauthorized, tokenkeeper.CodeUnauthorized)
	})
	t.Run("Audit", func(t *testing.T) {
		entries, err := e.store.ListAudit(t.Context(), tokenkeeper.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		adminID, _ := tokenkeeper.ParseAPIKey(e.admin)
		var got []string
		for _, en := range entries {
			if en.Actor != "apikey:"+string(adminID) {
				t.Errorf("actor %q", en.Actor)
			}
			got = append(got, en.Action+" "+en.Detail)
		}
		id := string(created.ID)
		wantEntries := []string{"apikey.revoke id=" + id, "apikey.revoke id=" + id, "apikey.create id=" + id + ` name="ci" scopes=tokens,proxy`}
		if diff := cmp.Diff(wantEntries, got); diff != "" {
			t.Errorf("audit (-want +got):\n%s", diff)
		}
	})
	t.Run("RevokeUnknown", func(t *testing.T) {
		want(t, e.do(t, req{method: "DELETE", path: "/v1/api-keys/ak" + strings.Repeat("b", 32), key: e.admin}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	t.Run("RevokeMalformed", func(t *testing.T) {
		want(t, e.do(t, req{method: "DELETE", path: "/v1/api-keys/ak1", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("ListUnknownParameter", func(t *testing.T) {
		want(t, e.do(t, req{method: "GET", path: "/v1/api-keys?all=1", key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	for name, body := range map[string]any{
		"NoName":       map[string]any{"scopes": []string{"admin"}},
		"NoScopes":     map[string]any{"name": "x"},
		"EmptyScopes":  map[string]any{"name": "x", "scopes": []string{}},
		"UnknownScope": map[string]any{"name": "x", "scopes": []string{"root"}},
		"ScopesString": map[string]any{"name": "x", "scopes": "admin"},
		"LongName":     map[string]any{"name": strings.Repeat("n", 201), "scopes": []string{"admin"}},
	} {
		t.Run("Create"+name, func(t *testing.T) {
			want(t, e.do(t, req{method: "POST", path: "/v1/api-keys", key: e.admin, body: body}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		})
	}
}

func TestServer_Audit(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	e.connect(t, "beta")
	for _, id := range []string{"acme", "beta", "acme"} {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/" + id + "/refresh", key: e.admin}), http.StatusOK, "")
	}
	e.harvest(t)
	list := func(t *testing.T, q string) httpapi.AuditList {
		t.Helper()
		r := e.do(t, req{method: "GET", path: "/v1/audit" + q, key: e.admin})
		want(t, r, http.StatusOK, "")
		var l httpapi.AuditList
		r.decode(t, &l)
		return l
	}
	all := list(t, "")
	if len(all.Entries) != 5 || all.NextCursor != "" {
		t.Fatalf("entries %d, next %q", len(all.Entries), all.NextCursor)
	}
	if e0 := all.Entries[0]; e0.Action != "connection.refresh" || e0.ConnectionID != "acme" || !strings.HasPrefix(e0.Actor, "apikey:ak") {
		t.Errorf("newest entry %+v", e0)
	}
	t.Run("Pages", func(t *testing.T) {
		var got []*httpapi.AuditEntry
		cursor := ""
		for {
			q := "?limit=2"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			l := list(t, q)
			got = append(got, l.Entries...)
			if cursor = l.NextCursor; cursor == "" {
				break
			}
		}
		if diff := cmp.Diff(all.Entries, got); diff != "" {
			t.Errorf("paged (-all +pages):\n%s", diff)
		}
	})
	t.Run("Filter", func(t *testing.T) {
		l := list(t, "?connection_id=beta")
		if len(l.Entries) != 2 || l.Entries[0].Action != "connection.refresh" || l.Entries[1].Action != "connect_session.create" {
			t.Errorf("beta's entries %+v", l.Entries)
		}
	})
	for name, q := range map[string]string{
		"BadCursor": "?cursor=abc", "ZeroCursor": "?cursor=0", "BadLimit": "?limit=-1", "BadID": "?connection_id=a%20b",
	} {
		t.Run(name, func(t *testing.T) {
			want(t, e.do(t, req{method: "GET", path: "/v1/audit" + q, key: e.admin}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		})
	}
}
