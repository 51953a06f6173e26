package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// longID is one byte over the limit.
var longID = strings.Repeat("a", tokenkeeper.MaxConnectionIDLength+1)

func TestServer_GetConnection(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	t.Run("OK", func(t *testing.T) {
		r := e.do(t, req{method: "GET", path: "/v1/connections/acme", key: e.tokens})
		want(t, r, http.StatusOK, "")
		var c httpapi.Connection
		r.decode(t, &c)
		rec := e.record(t, "acme")
		wantConn := httpapi.FromRecord(rec)
		if diff := cmp.Diff(wantConn, &c); diff != "" {
			t.Errorf("connection (-store +api):\n%s", diff)
		}
		if c.AccessTokenExpiresAt == nil || !c.AccessTokenExpiresAt.Equal(rec.Tokens.Expiry) || c.State != tokenkeeper.StateActive {
			t.Errorf("connection %+v", c)
		}
		// Unset times are null, never left out.
		var raw map[string]any
		r.decode(t, &raw)
		if v, ok := raw["degraded_since"]; !ok || v != nil {
			t.Errorf("degraded_since = %v (present %v), want null", v, ok)
		}
		for _, f := range []string{"created_at", "updated_at", "last_refresh_at", "next_refresh_at", "access_token_expires_at"} {
			if v, _ := raw[f].(string); !strings.HasSuffix(v, "Z") {
				t.Errorf("%s = %v, want a time in UTC", f, raw[f])
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		want(t, e.do(t, req{method: "GET", path: "/v1/connections/nobody", key: e.tokens}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	for name, path := range map[string]string{
		"Space":       "/v1/connections/a%20b",
		"TooLong":     "/v1/connections/" + longID,
		"Slash":       "/v1/connections/a%2Fb",
		"Unicode":     "/v1/connections/%C3%A9",
		"DotSegment":  "/v1/connections/..",
		"EmptySegmnt": "/v1/connections//token",
	} {
		t.Run("BadID"+name, func(t *testing.T) {
			r := e.do(t, req{method: "GET", path: path, key: e.tokens})
			want(t, r, http.StatusBadRequest, tokenkeeper.CodeInvalid)
		})
	}
	t.Run("DotIDEncoded", func(t *testing.T) {
		// Percent-encoded, ".." reaches the route, which refuses it as an id.
		want(t, e.do(t, req{method: "GET", path: "/v1/connections/%2E%2E", key: e.tokens}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
}

func (e *env) record(t testing.TB, id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	t.Helper()
	rec, err := e.store.GetConnection(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestServer_ListConnections(t *testing.T) {
	e := newEnv(t)
	for _, id := range []tokenkeeper.ConnectionID{"a1", "a2", "a3", "b1"} {
		e.connect(t, id)
	}
	if r := e.do(t, req{method: "DELETE", path: "/v1/connections/a2", key: e.admin}); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	list := func(t *testing.T, query string) httpapi.ConnectionList {
		t.Helper()
		r := e.do(t, req{method: "GET", path: "/v1/connections" + query, key: e.tokens})
		want(t, r, http.StatusOK, "")
		var l httpapi.ConnectionList
		r.decode(t, &l)
		return l
	}
	ids := func(l httpapi.ConnectionList) []string {
		out := []string{}
		for _, c := range l.Connections {
			out = append(out, string(c.ID))
		}
		return out
	}
	t.Run("All", func(t *testing.T) {
		l := list(t, "")
		if diff := cmp.Diff([]string{"a1", "a2", "a3", "b1"}, ids(l)); diff != "" || l.NextCursor != "" {
			t.Errorf("ids (-want +got):\n%s next_cursor %q", diff, l.NextCursor)
		}
	})
	t.Run("Pages", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			q := "?limit=3"
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			l := list(t, q)
			got = append(got, ids(l)...)
			if cursor = l.NextCursor; cursor == "" {
				if pages != 1 {
					t.Errorf("%d pages, want 2", pages+1)
				}
				break
			}
		}
		if diff := cmp.Diff([]string{"a1", "a2", "a3", "b1"}, got); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
		// An exact fit: no empty last page.
		if l := list(t, "?limit=4"); l.NextCursor != "" {
			t.Errorf("next_cursor %q on a page that holds everything", l.NextCursor)
		}
	})
	t.Run("Filters", func(t *testing.T) {
		if diff := cmp.Diff([]string{"a1", "a3"}, ids(list(t, "?prefix=a&state=active"))); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"a2"}, ids(list(t, "?state=disconnected"))); diff != "" {
			t.Errorf("ids (-want +got):\n%s", diff)
		}
	})
	for name, q := range map[string]string{
		"BadState":   "?state=sleeping",
		"LimitZero":  "?limit=0",
		"LimitHuge":  "?limit=1001",
		"LimitWords": "?limit=ten",
		"BadPrefix":  "?prefix=a%20b",
		"BadCursor":  "?cursor=a%20b",
		"Unknown":    "?limt=5",
		"Twice":      "?limit=1&limit=2",
	} {
		t.Run(name, func(t *testing.T) {
			want(t, e.do(t, req{method: "GET", path: "/v1/connections" + q, key: e.tokens}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
		})
	}
}

func TestServer_Token(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	t.Run("OK", func(t *testing.T) {
		before := e.srv.Now()
		r := e.do(t, req{method: "POST", path: "/v1/connections/acme/token", key: e.tokens})
		want(t, r, http.StatusOK, "")
		var raw map[string]any
		r.decode(t, &raw)
		var tok httpapi.TokenResponse
		r.decode(t, &tok)
		e.secrets.add(tokenkeeper.FieldAccessToken, tok.AccessToken.Reveal())
		rec := e.record(t, "acme")
		if tok.TokenType != "Bearer" || tok.AccessToken.IsZero() || !tok.ExpiresAt.Equal(rec.Tokens.ExpiresAt) {
			t.Errorf("token %v, want the promise %s", tok, rec.Tokens.ExpiresAt)
		}
		if max := int64(tok.ExpiresAt.Sub(before) / time.Second); tok.ExpiresIn > max || tok.ExpiresIn < max-2 {
			t.Errorf("expires_in %d, want about %d (rounded down)", tok.ExpiresIn, max)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
			t.Errorf("headers %v", r.header)
		}
		if len(raw) != 4 {
			t.Errorf("fields %v, want access_token, token_type, expires_at, expires_in", raw)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/nobody/token", key: e.tokens}), http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
	t.Run("BadID", func(t *testing.T) {
		want(t, e.do(t, req{method: "POST", path: "/v1/connections/" + longID + "/token", key: e.tokens}), http.StatusBadRequest, tokenkeeper.CodeInvalid)
	})
	t.Run("ReconnectRequired", func(t *testing.T) {
		e.connect(t, "dead")
		e.revokeAtProvider(t)
		r := e.do(t, req{method: "POST", path: "/v1/connections/dead/refresh", key: e.admin})
		want(t, r, http.StatusConflict, tokenkeeper.CodeReconnectRequired)
		r = e.do(t, req{method: "POST", path: "/v1/connections/dead/token", key: e.tokens})
		want(t, r, http.StatusConflict, tokenkeeper.CodeReconnectRequired)
		if strings.Contains(string(r.body), "access_token") {
			t.Errorf("a reconnect_required answer holds a token field: %s", r.body)
		}
	})
	t.Run("Unavailable", func(t *testing.T) {
		e.connect(t, "slow")
		e.expire(t)
		e.faults503(t)
		r := e.do(t, req{method: "POST", path: "/v1/connections/slow/token", key: e.tokens})
		want(t, r, http.StatusServiceUnavailable, tokenkeeper.CodeUnavailable)
		if r.header.Get("Retry-After") != "5" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
	})
}

// revokeAtProvider revokes the newest authorisation at the emulator, as a
// user uninstalling the app in Pleo.
func (e *env) revokeAtProvider(t testing.TB) {
	t.Helper()
	auths := e.srv.Report().Authorisations
	if err := e.srv.Revoke(auths[len(auths)-1].ID); err != nil {
		t.Fatal(err)
	}
}

// expire moves the clock past every token's promise.
func (e *env) expire(t testing.TB) {
	t.Helper()
	if _, err := e.srv.Advance(time.Hour); err != nil {
		t.Fatal(err)
	}
}

// faults503 makes the token endpoint and the API answer 503 for the rest of
// the test.
func (e *env) faults503(t testing.TB) {
	t.Helper()
	f := emulatorFaults503()
	if err := e.srv.SetFaults(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.SetFaults(nil) })
}

// TestFromConnection: the JSON shape is fixed: nil slices and maps are []
// and {}, unset times null, every field present.
func TestFromConnection(t *testing.T) {
	created := time.Date(2026, 3, 1, 9, 0, 0, 123456000, time.FixedZone("CET", 3600))
	c := httpapi.FromConnection(&tokenkeeper.Connection{ID: "acme", Provider: "pleo", State: tokenkeeper.StateDisconnected,
		Generation: 3, CreatedAt: created, UpdatedAt: created}, time.Time{})
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"id":"acme","provider":"pleo","subject":"","scopes":[],"state":"disconnected","degraded":false,` +
		`"degraded_since":null,"created_at":"2026-03-01T08:00:00.123456Z","updated_at":"2026-03-01T08:00:00.123456Z",` +
		`"last_refresh_at":null,"next_refresh_at":null,"access_token_expires_at":null,"last_error":"","metadata":{},"generation":3}`
	if string(data) != wantJSON {
		t.Errorf("JSON\n%s\nwant\n%s", data, wantJSON)
	}
}
