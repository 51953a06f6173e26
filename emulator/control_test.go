package emulator_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// The control plane is tested over plain HTTP, not through Remote, so that the wire format
// itself is pinned down.

// ctlErrorBody is the body of every control-plane error.
type ctlErrorBody struct {
	Error string `json:"error"`
}

func TestControl_Clock(t *testing.T) {
	t.Run("Advance", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		before := time.Now()
		var got emulator.ClockState
		if status, _ := controlSend(t, srv, http.MethodPost, "/clock", `{"advance":"16m"}`, &got); status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		if got.Offset != emulator.Duration(16*time.Minute) || got.Now.Before(before.Add(16*time.Minute)) {
			t.Errorf("clock %+v, want an offset of 16m and a time 16m ahead", got)
		}
		var read map[string]string
		if status, _ := controlSend(t, srv, http.MethodGet, "/clock", "", &read); status != http.StatusOK {
			t.Fatalf("GET: status %d", status)
		}
		if read["offset"] != "16m0s" || read["now"] == "" {
			t.Errorf("GET /_emulator/clock = %v, want offset 16m0s and a time", read)
		}
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
			t.Errorf("API after 16m: status %d, want 401 (the 15m token expired)", status)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		for name, body := range map[string]string{
			"Negative":     `{"advance":"-1m"}`,
			"Malformed":    `{"advance":"soon"}`,
			"Number":       `{"advance":60}`,
			"UnknownField": `{"advance":"1m","by":"me"}`,
			"Empty":        ``,
			"Trailing":     `{"advance":"1m"} {}`,
		} {
			var e ctlErrorBody
			if status, _ := controlSend(t, srv, http.MethodPost, "/clock", body, &e); status != http.StatusBadRequest || e.Error == "" {
				t.Errorf("%s: status %d, error %q; want 400 with an error", name, status, e.Error)
			}
		}
		var got emulator.ClockState
		controlSend(t, srv, http.MethodGet, "/clock", "", &got)
		if got.Offset != 0 {
			t.Errorf("offset %v after refused requests, want 0", got.Offset)
		}
	})
}

func TestControl_Authorisations(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	connect(t, srv)
	var list struct {
		Authorisations []emulator.AuthorisationReport `json:"authorisations"`
	}
	if status, _ := controlSend(t, srv, http.MethodGet, "/authorisations", "", &list); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if diff := cmp.Diff(srv.Report().Authorisations, list.Authorisations); diff != "" {
		t.Fatalf("GET /_emulator/authorisations differs from the report (-report +got):\n%s", diff)
	}
	if len(list.Authorisations) != 2 {
		t.Fatalf("%d authorisations, want 2", len(list.Authorisations))
	}

	t.Run("Revoke", func(t *testing.T) {
		id := list.Authorisations[0].ID
		var got emulator.AuthorisationReport
		if status, _ := controlSend(t, srv, http.MethodPost, "/authorisations/"+id+"/revoke", "", &got); status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		if got.ID != id || got.State != emulator.AuthorisationRevoked || got.RevokedReason != emulator.RevokedByUser || got.RevokedAt == nil {
			t.Errorf("revoked authorisation %+v", got)
		}
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
			t.Errorf("API after revocation: status %d, want 401", status)
		}
		if other := srv.Report().Authorisations[1]; other.State != emulator.AuthorisationActive {
			t.Errorf("the other authorisation is %s, want active", other.State)
		}
	})

	t.Run("RevokeUnknown", func(t *testing.T) {
		var e ctlErrorBody
		if status, _ := controlSend(t, srv, http.MethodPost, "/authorisations/auth_nope/revoke", "", &e); status != http.StatusNotFound {
			t.Errorf("status %d, want 404", status)
		}
		if !strings.Contains(e.Error, "auth_nope") {
			t.Errorf("error %q does not name the id", e.Error)
		}
	})
}

func TestControl_Clients(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	clientIDs := func() []string {
		var list struct{ Clients []emulator.Client }
		controlSend(t, srv, http.MethodGet, "/clients", "", &list)
		var ids []string
		for _, c := range list.Clients {
			ids = append(ids, c.ID)
		}
		return ids
	}

	t.Run("Register", func(t *testing.T) {
		body := `{"id":"added","secret":"s3cret","redirect_uris":["http://127.0.0.1:9/cb"],"scopes":["users:read"],"name":"Added App"}`
		if status, _ := controlSend(t, srv, http.MethodPost, "/clients", body, nil); status != http.StatusCreated {
			t.Fatalf("status %d, want 201", status)
		}
		added := emulator.Client{ID: "added", Secret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:9/cb"}}
		tk := connectAs(t, srv, added, withScope("users:read"))
		var got map[string]string
		apiSend(t, srv, http.MethodGet, "/v1/introspect", tk.Access, "", &got)
		if got["clientId"] != "added" || got["applicationName"] != "Added App" {
			t.Errorf("introspect %v, want the added client", got)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		before := clientIDs()
		for name, body := range map[string]string{
			"NoRedirectURI": `{"id":"bad","secret":"s","redirect_uris":[]}`,
			"RelativeURI":   `{"id":"bad","secret":"s","redirect_uris":["/cb"]}`,
			"FragmentURI":   `{"id":"bad","secret":"s","redirect_uris":["http://127.0.0.1:9/cb#x"]}`,
			"UnknownScope":  `{"id":"bad","secret":"s","redirect_uris":["http://127.0.0.1:9/cb"],"scopes":["admin:all"]}`,
			"NoSecret":      `{"id":"bad","redirect_uris":["http://127.0.0.1:9/cb"]}`,
			"UnknownField":  `{"id":"bad","secret":"s","redirect_uris":["http://127.0.0.1:9/cb"],"grant_types":["x"]}`,
		} {
			var e ctlErrorBody
			if status, _ := controlSend(t, srv, http.MethodPost, "/clients", body, &e); status != http.StatusBadRequest || e.Error == "" {
				t.Errorf("%s: status %d, error %q; want 400 with an error", name, status, e.Error)
			}
		}
		if diff := cmp.Diff(before, clientIDs()); diff != "" {
			t.Errorf("refused clients changed the registry (-before +after):\n%s", diff)
		}
	})
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %s", raw)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestControl_Report(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	first := connect(t, srv)
	if status, _, _ := apiGet(t, srv, "/v1/introspect", first.Access); status != http.StatusOK {
		t.Fatalf("API: status %d", status)
	}
	status, body := refresh(t, srv, first.Refresh)
	tokensFrom(t, status, body)
	// Presenting the rotated-out token again: invalid_grant, a violation, and revocation.
	if status, body := refresh(t, srv, first.Refresh); body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v, want invalid_grant", status, body)
	}
	apiGet(t, srv, "/v1/introspect", "pat_unknown")

	var raw map[string]json.RawMessage
	if status, _ := controlSend(t, srv, http.MethodGet, "/report", "", &raw); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	top := make([]string, 0, len(raw))
	for k := range raw {
		top = append(top, k)
	}
	sort.Strings(top)
	if diff := cmp.Diff([]string{"authorisations", "counters", "lost_response_violations", "now", "violation_counts", "violations", "violations_dropped"}, top); diff != "" {
		t.Errorf("report fields (-want +got):\n%s", diff)
	}
	var auths, viols []json.RawMessage
	if err := json.Unmarshal(raw["authorisations"], &auths); err != nil || len(auths) != 1 {
		t.Fatalf("authorisations %s", raw["authorisations"])
	}
	if err := json.Unmarshal(raw["violations"], &viols); err != nil || len(viols) != 1 {
		t.Fatalf("violations %s", raw["violations"])
	}
	wantAuth := []string{"client_id", "created_at", "id", "refreshes", "revoked_at", "revoked_reason", "scopes", "state", "subject"}
	if diff := cmp.Diff(wantAuth, keysOf(t, auths[0])); diff != "" {
		t.Errorf("authorisation fields (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"at", "authorisation", "detail", "rule"}, keysOf(t, viols[0])); diff != "" {
		t.Errorf("violation fields (-want +got):\n%s", diff)
	}

	var rep emulator.Report
	if err := json.Unmarshal(mustMarshal(t, raw), &rep); err != nil {
		t.Fatal(err)
	}
	wantCounters := map[string]map[string]int64{
		"authorize":          {"ok": 1},
		"authorization_code": {"ok": 1},
		"refresh_token":      {"ok": 1, "invalid_grant": 1},
		"api":                {"ok": 1, "invalid_token": 1},
	}
	if diff := cmp.Diff(wantCounters, rep.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	a := rep.Authorisations[0]
	if a.ClientID != testClient.ID || a.Subject != "urn:pleo:company:"+companyNordlys || a.State != emulator.AuthorisationRevoked ||
		a.RevokedReason != emulator.RevokedRefreshTokenReuse || a.Refreshes != 1 {
		t.Errorf("authorisation %+v", a)
	}
	if v := rep.Violations[0]; v.Rule != emulator.RuleRefreshTokenReuse || v.Authorisation != a.ID || v.Detail == "" || v.At.IsZero() {
		t.Errorf("violation %+v", v)
	}
	if diff := cmp.Diff(map[string]int{emulator.RuleRefreshTokenReuse: 1}, rep.ViolationCounts); diff != "" {
		t.Errorf("violation_counts (-want +got):\n%s", diff)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestControl_MaxViolations(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true, MaxViolations: 2})
	tk := connect(t, srv)
	status, body := refresh(t, srv, tk.Refresh)
	tokensFrom(t, status, body)
	for range 3 { // the superseded access token, three times
		apiGet(t, srv, "/v1/introspect", tk.Access)
	}
	var rep emulator.Report
	controlSend(t, srv, http.MethodGet, "/report", "", &rep)
	if len(rep.Violations) != 2 || rep.ViolationsDropped != 1 {
		t.Errorf("%d violations listed, %d dropped; want 2 and 1", len(rep.Violations), rep.ViolationsDropped)
	}
	if diff := cmp.Diff(map[string]int{emulator.RuleStaleAccessToken: 3}, rep.ViolationCounts); diff != "" {
		t.Errorf("violation_counts (-want +got):\n%s", diff)
	}
}

func TestControl_Reset(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	extra := `{"id":"extra","secret":"x","redirect_uris":["http://127.0.0.1:9/cb"]}`
	if status, _ := controlSend(t, srv, http.MethodPost, "/clients", extra, nil); status != http.StatusCreated {
		t.Fatalf("add client: status %d", status)
	}
	tk := connect(t, srv)
	status, body := refresh(t, srv, tk.Refresh)
	tokensFrom(t, status, body)
	apiGet(t, srv, "/v1/introspect", tk.Access) // a stale_access_token violation
	if status, _ := controlSend(t, srv, http.MethodPut, "/faults", `{"api":{"error_503":0.5}}`, nil); status != http.StatusOK {
		t.Fatalf("put faults: status %d", status)
	}
	controlSend(t, srv, http.MethodPost, "/clock", `{"advance":"1h"}`, nil)

	if status, _ := controlSend(t, srv, http.MethodPost, "/reset", "", nil); status != http.StatusNoContent {
		t.Fatalf("reset: status %d, want 204", status)
	}

	var rep emulator.Report
	controlSend(t, srv, http.MethodGet, "/report", "", &rep)
	if len(rep.Authorisations) != 0 || len(rep.Violations) != 0 || len(rep.ViolationCounts) != 0 || len(rep.Counters) != 0 {
		t.Errorf("report after reset is not empty: %+v", rep)
	}
	var faults emulator.Faults
	controlSend(t, srv, http.MethodGet, "/faults", "", &faults)
	if len(faults) != 0 {
		t.Errorf("faults after reset: %v", faults)
	}
	var clock emulator.ClockState
	controlSend(t, srv, http.MethodGet, "/clock", "", &clock)
	if clock.Offset != 0 {
		t.Errorf("clock offset after reset: %v", clock.Offset)
	}
	var clients struct{ Clients []emulator.Client }
	controlSend(t, srv, http.MethodGet, "/clients", "", &clients)
	if len(clients.Clients) != 1 || clients.Clients[0].ID != testClient.ID {
		t.Errorf("clients after reset: %+v, want only the configured %s", clients.Clients, testClient.ID)
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
		t.Errorf("a token from before the reset: status %d, want 401", status)
	}
	fresh := connect(t, srv) // the configured client still works
	if status, _, _ := apiGet(t, srv, "/v1/introspect", fresh.Access); status != http.StatusOK {
		t.Errorf("a token from after the reset: status %d, want 200", status)
	}
}

func TestControl_UnknownPath(t *testing.T) {
	srv := startServer(t, emulator.Config{})
	for _, path := range []string{"/nope", "/", "/authorisations/x/unrevoke", "/clock/extra"} {
		var e ctlErrorBody
		status, h := controlSend(t, srv, http.MethodGet, path, "", &e)
		if status != http.StatusNotFound || e.Error == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("GET /_emulator%s: status %d, %s, error %q; want a 404 JSON error", path, status, h.Get("Content-Type"), e.Error)
		}
	}
}
