package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// These tests run a real keeper on SQLite against the emulator; newEnv's
// cleanup fails them if the emulator's ledger holds a violation.

func TestProxy_Forward(t *testing.T) {
	t.Run("GetEmployees", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		front := e.proxy()

		resp, got := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/v2/employees?limit=3", nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.StatusCode, got)
		}
		// The same call made directly with the keeper's token.
		tok := e.k.Client("acme", nil)
		direct := newRequest(t, http.MethodGet, e.srv.APIURL+"/v2/employees?limit=3", nil)
		dresp, err := tok.Do(direct)
		if err != nil {
			t.Fatal(err)
		}
		var want, have map[string]any
		if err := json.NewDecoder(dresp.Body).Decode(&want); err != nil {
			t.Fatal(err)
		}
		dresp.Body.Close()
		if err := json.Unmarshal(got, &have); err != nil {
			t.Fatalf("body is not JSON: %v", err)
		}
		if diff := cmp.Diff(want, have); diff != "" {
			t.Fatalf("proxied body differs from the emulator's (-direct +proxied):\n%s", diff)
		}
		if n := len(have["data"].([]any)); n != 3 {
			t.Fatalf("%d employees, want 3: the query was not forwarded", n)
		}
		if n := e.refreshes(); n != 0 {
			t.Fatalf("%d refreshes, want 0", n)
		}
	})

	t.Run("PostJSON", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		front := e.proxy()
		const payload = `{"from":"2026-01-01","to":"2026-01-31"}`
		req := newRequest(t, http.MethodPost, front.URL+"/connections/acme/proxy/v1/export-jobs", strings.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d, want 201: %s", resp.StatusCode, body)
		}
		var job struct{ Data struct{ From, To string } }
		if err := json.Unmarshal(body, &job); err != nil || job.Data.From != "2026-01-01" || job.Data.To != "2026-01-31" {
			t.Fatalf("created job %s (%v), want the period sent", body, err)
		}
		sent := e.sent.all()
		if len(sent) != 1 || sent[0].body.String() != payload || sent[0].Header.Get("Content-Type") != "application/json" {
			t.Fatalf("upstream got %d requests; want 1 with the body and content type intact", len(sent))
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		e := newEnv(t)
		front := e.proxy()
		resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/nobody/proxy/v2/employees", nil))
		if resp.StatusCode != http.StatusNotFound || errorCode(body) != "not_found" {
			t.Fatalf("status %d, body %s; want 404 not_found", resp.StatusCode, body)
		}
		if n := len(e.sent.all()); n != 0 {
			t.Fatalf("%d requests reached the API without a connection", n)
		}
	})

	t.Run("ErrInvalidConnectionID", func(t *testing.T) {
		e := newEnv(t)
		front := e.proxy()
		resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/a%20b/proxy/v2/employees", nil))
		if resp.StatusCode != http.StatusBadRequest || errorCode(body) != "invalid" {
			t.Fatalf("status %d, body %s; want 400 invalid", resp.StatusCode, body)
		}
	})

	t.Run("ErrReconnectRequired", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		front := e.proxy()
		// The user uninstalls the app; later the token's promise ends, so the
		// keeper refreshes and learns invalid_grant.
		if err := e.srv.Revoke(e.srv.Report().Authorisations[0].ID); err != nil {
			t.Fatal(err)
		}
		e.expire()
		resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/v2/employees", nil))
		if resp.StatusCode != http.StatusConflict || errorCode(body) != "reconnect_required" {
			t.Fatalf("status %d, body %s; want 409 reconnect_required", resp.StatusCode, body)
		}
		if n := len(e.sent.all()); n != 0 {
			t.Fatalf("%d requests reached the API after the grant died", n)
		}
	})

	t.Run("ErrReconnectRequiredAfter401", func(t *testing.T) {
		e := newEnv(t)
		e.connect("acme")
		front := e.proxy()
		// Revoked while the keeper still holds a token within its promise:
		// the API answers 401, and the refresh that follows learns
		// invalid_grant.
		if err := e.srv.Revoke(e.srv.Report().Authorisations[0].ID); err != nil {
			t.Fatal(err)
		}
		url := front.URL + "/connections/acme/proxy/v2/employees"
		first, body := do(t, newRequest(t, http.MethodGet, url, nil))
		// The transport learns invalid_grant from the refresh the 401
		// started, and says so at once: the first caller sees 409.
		if first.StatusCode != http.StatusConflict || errorCode(body) != "reconnect_required" {
			t.Fatalf("first call: status %d, body %s; want 409 reconnect_required", first.StatusCode, body)
		}
		resp, body := do(t, newRequest(t, http.MethodGet, url, nil))
		if resp.StatusCode != http.StatusConflict || errorCode(body) != "reconnect_required" {
			t.Fatalf("second call: status %d, body %s; want 409 reconnect_required", resp.StatusCode, body)
		}
		if n := len(e.sent.all()); n != 1 {
			t.Fatalf("%d requests reached the API, want 1 (no retry with a dead grant)", n)
		}
	})
}
