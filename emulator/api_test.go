package emulator_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

func TestAPI_Introspect(t *testing.T) {
	cases := []struct {
		name    string
		subject string // urn_pleo_params_oauth_subject; empty: the default company
		wantURN string
	}{
		{"DefaultCompany", "", "urn:pleo:company:" + companyNordlys},
		{"SubjectURN", "urn:pleo:company:" + companyLagom, "urn:pleo:company:" + companyLagom},
		{"SubjectBareID", companyFjord, "urn:pleo:company:" + companyFjord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			tk := connectAs(t, srv, testClient, func(q url.Values) {
				if tc.subject != "" {
					q.Set("urn_pleo_params_oauth_subject", tc.subject)
				}
			})
			var got map[string]string
			if status, _ := apiSend(t, srv, http.MethodGet, "/v1/introspect", tk.Access, "", &got); status != http.StatusOK {
				t.Fatalf("status %d, want 200; body %v", status, got)
			}
			want := map[string]string{
				"authMethod":      "OAUTH2",
				"clientId":        testClient.ID,
				"scope":           "export-jobs:read users:read",
				"applicationName": testClient.Name,
				"subjectURN":      tc.wantURN,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("introspect (-want +got):\n%s", diff)
			}
		})
	}
}

// employeesPage is the body of GET /v2/employees.
type employeesPage struct {
	Data []struct {
		ID        string `json:"id"`
		CompanyID string `json:"companyId"`
	} `json:"data"`
	Pagination struct {
		HasPreviousPage bool   `json:"hasPreviousPage"`
		HasNextPage     bool   `json:"hasNextPage"`
		Total           int    `json:"total"`
		EndCursor       string `json:"endCursor"`
	} `json:"pagination"`
}

func TestAPI_Employees(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)

	t.Run("Pagination", func(t *testing.T) {
		const wantTotal = 12 // the seeded employees of the first company
		seen := map[string]bool{}
		var sizes []int
		after := ""
		for page := 0; ; page++ {
			if page > wantTotal {
				t.Fatalf("pagination does not end after %d pages", page)
			}
			path := "/v2/employees?limit=5"
			if after != "" {
				path += "&after=" + url.QueryEscape(after)
			}
			var p employeesPage
			if status, _ := apiSend(t, srv, http.MethodGet, path, tk.Access, "", &p); status != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200", path, status)
			}
			if p.Pagination.Total != wantTotal {
				t.Errorf("page %d: total %d, want %d", page, p.Pagination.Total, wantTotal)
			}
			if p.Pagination.HasPreviousPage != (page > 0) {
				t.Errorf("page %d: hasPreviousPage %v", page, p.Pagination.HasPreviousPage)
			}
			sizes = append(sizes, len(p.Data))
			for _, e := range p.Data {
				if seen[e.ID] {
					t.Errorf("employee %s listed twice", e.ID)
				}
				seen[e.ID] = true
				if e.CompanyID != companyNordlys {
					t.Errorf("employee %s of company %s, want %s", e.ID, e.CompanyID, companyNordlys)
				}
			}
			if !p.Pagination.HasNextPage {
				break
			}
			after = p.Pagination.EndCursor
		}
		if diff := cmp.Diff([]int{5, 5, 2}, sizes); diff != "" {
			t.Errorf("page sizes (-want +got):\n%s", diff)
		}
		if len(seen) != wantTotal {
			t.Errorf("walked %d employees, want %d", len(seen), wantTotal)
		}
	})

	t.Run("BadRequest", func(t *testing.T) {
		for _, query := range []string{"limit=0", "limit=101", "limit=x", "limit=-1", "after=not-a-cursor", "after=%21%21"} {
			status, _ := apiSend(t, srv, http.MethodGet, "/v2/employees?"+query, tk.Access, "", nil)
			if status != http.StatusBadRequest {
				t.Errorf("?%s: status %d, want 400", query, status)
			}
		}
	})

	t.Run("InsufficientScope", func(t *testing.T) {
		narrow := connectAs(t, srv, testClient, withScope("export-jobs:read"))
		status, h := apiSend(t, srv, http.MethodGet, "/v2/employees", narrow.Access, "", nil)
		if status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", status)
		}
		if wa := h.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="insufficient_scope"`) {
			t.Errorf("WWW-Authenticate %q, want a Bearer insufficient_scope challenge", wa)
		}
	})
}

// exportJob is one export job as the API returns it.
type exportJob struct {
	ID        string `json:"id"`
	CompanyID string `json:"companyId"`
	Status    string `json:"status"`
	From      string `json:"from"`
	To        string `json:"to"`
}

func TestAPI_ExportJobs(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	rw := connectAs(t, srv, testClient, withScope("export-jobs:read export-jobs:write"))

	t.Run("CreateListGet", func(t *testing.T) {
		var created struct{ Data exportJob }
		status, _ := apiSend(t, srv, http.MethodPost, "/v1/export-jobs", rw.Access, `{"from":"2026-01-01","to":"2026-01-31"}`, &created)
		if status != http.StatusCreated {
			t.Fatalf("POST: status %d, want 201", status)
		}
		want := exportJob{ID: created.Data.ID, CompanyID: companyNordlys, Status: "pending", From: "2026-01-01", To: "2026-01-31"}
		if created.Data.ID == "" || created.Data != want {
			t.Fatalf("created %+v, want %+v", created.Data, want)
		}
		var list struct{ Data []exportJob }
		if status, _ := apiSend(t, srv, http.MethodGet, "/v1/export-jobs", rw.Access, "", &list); status != http.StatusOK {
			t.Fatalf("list: status %d", status)
		}
		found := 0
		for _, j := range list.Data {
			if j == want {
				found++
			}
		}
		if found != 1 {
			t.Errorf("the list holds the new job %d times, want once: %+v", found, list.Data)
		}
		var got struct{ Data exportJob }
		if status, _ := apiSend(t, srv, http.MethodGet, "/v1/export-jobs/"+want.ID, rw.Access, "", &got); status != http.StatusOK {
			t.Fatalf("get: status %d", status)
		}
		if got.Data != want {
			t.Errorf("get: %+v, want %+v", got.Data, want)
		}
	})

	t.Run("UnknownID", func(t *testing.T) {
		status, _ := apiSend(t, srv, http.MethodGet, "/v1/export-jobs/no-such-job", rw.Access, "", nil)
		if status != http.StatusNotFound {
			t.Errorf("status %d, want 404", status)
		}
	})

	t.Run("Scopes", func(t *testing.T) {
		readOnly := connectAs(t, srv, testClient, withScope("export-jobs:read"))
		usersOnly := connectAs(t, srv, testClient, withScope("users:read"))
		cases := []struct {
			name, method, bearer, body string
			want                       int
		}{
			{"ListWithRead", http.MethodGet, readOnly.Access, "", http.StatusOK},
			{"ListWithoutRead", http.MethodGet, usersOnly.Access, "", http.StatusForbidden},
			{"CreateWithoutWrite", http.MethodPost, readOnly.Access, `{}`, http.StatusForbidden},
			{"CreateWithWrite", http.MethodPost, rw.Access, `{}`, http.StatusCreated},
		}
		for _, tc := range cases {
			status, h := apiSend(t, srv, tc.method, "/v1/export-jobs", tc.bearer, tc.body, nil)
			if status != tc.want {
				t.Errorf("%s: status %d, want %d", tc.name, status, tc.want)
			}
			if status == http.StatusForbidden && !strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, h.Get("WWW-Authenticate"))
			}
		}
	})

	t.Run("BadBody", func(t *testing.T) {
		cases := map[string]string{
			"UnknownField": `{"from":"2026-01-01","format":"csv"}`,
			"BadDate":      `{"from":"2026-13-01"}`,
			"ShortDate":    `{"to":"2026-1-5"}`,
			"ToBeforeFrom": `{"from":"2026-02-01","to":"2026-01-31"}`,
			"NotJSON":      `{"from":`,
			"Oversized":    `{"from":"2026-01-01","pad":"` + strings.Repeat("x", 64<<10) + `"}`,
		}
		for name, body := range cases {
			var before struct{ Data []exportJob }
			apiSend(t, srv, http.MethodGet, "/v1/export-jobs", rw.Access, "", &before)
			status, _ := apiSend(t, srv, http.MethodPost, "/v1/export-jobs", rw.Access, body, nil)
			if status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, status)
			}
			var after struct{ Data []exportJob }
			apiSend(t, srv, http.MethodGet, "/v1/export-jobs", rw.Access, "", &after)
			if len(after.Data) != len(before.Data) {
				t.Errorf("%s: a refused request created a job", name)
			}
		}
	})
}

func TestAPI_Unauthorized(t *testing.T) {
	cases := []struct {
		name           string
		bearer         func(t *testing.T, srv *emulator.Server) string
		wantViolations []string
	}{
		{"UnknownToken", func(t *testing.T, srv *emulator.Server) string {
			connect(t, srv)
			return "pat_no-such-token"
		}, nil},
		{"RefreshTokenAsBearer", func(t *testing.T, srv *emulator.Server) string {
			return connect(t, srv).Refresh
		}, nil},
		{"Expired", func(t *testing.T, srv *emulator.Server) string {
			tk := connect(t, srv)
			if _, err := srv.Advance(emulator.DefaultAccessTokenTTL + time.Second); err != nil {
				t.Fatal(err)
			}
			return tk.Access
		}, []string{emulator.RuleStaleAccessToken}},
		{"SupersededByRefresh", func(t *testing.T, srv *emulator.Server) string {
			tk := connect(t, srv)
			status, body := refresh(t, srv, tk.Refresh)
			tokensFrom(t, status, body)
			return tk.Access
		}, []string{emulator.RuleStaleAccessToken}},
		{"Revoked", func(t *testing.T, srv *emulator.Server) string {
			tk := connect(t, srv)
			if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
				t.Fatal(err)
			}
			return tk.Access
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			bearer := tc.bearer(t, srv)
			status, _, h := apiGet(t, srv, "/v1/introspect", bearer)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", status)
			}
			if wa := h.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q, want a Bearer invalid_token challenge", wa)
			}
			if diff := cmp.Diff(tc.wantViolations, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAPI_NoBearer checks requests that carry no bearer token in the Authorization header:
// RFC 6750 §3.1 says the challenge then has no error attribute, and §2.3 tokens in the query
// string are not accepted (Pleo: "never in a query string").
func TestAPI_NoBearer(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	connect(t, srv)
	cases := []struct {
		name, query, authorization string
	}{
		{"NoAuthorization", "", ""},
		{"BasicScheme", "", basicAuth(testClient)},
		{"EmptyBearer", "", "Bearer "},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.authorization != "" {
			h.Set("Authorization", tc.authorization)
		}
		status, _, rh := sendRaw(t, http.MethodGet, srv.APIURL+"/v1/introspect"+tc.query, h, "")
		if status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", tc.name, status)
		}
		wa := rh.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, "Bearer ") || strings.Contains(wa, "error=") {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge without an error", tc.name, wa)
		}
	}
	if v := violations(srv); len(v) != 0 {
		t.Errorf("violations %v, want none", v)
	}
}

// TestAPI_TokenInQuery checks that a token in the query string is refused outright, with
// or without a header: RFC 6750 §2 allows one method per request, and Pleo only the header.
func TestAPI_TokenInQuery(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	for name, authorization := range map[string]string{"QueryOnly": "", "QueryAndHeader": "Bearer " + tk.Access} {
		h := http.Header{}
		if authorization != "" {
			h.Set("Authorization", authorization)
		}
		status, body, _ := sendRaw(t, http.MethodGet, srv.APIURL+"/v1/introspect?access_token="+url.QueryEscape(tk.Access), h, "")
		if status != http.StatusBadRequest || body["type"] != "invalid_request" {
			t.Errorf("%s: %d %v, want 400 invalid_request", name, status, body)
		}
	}
}

// installation is the body of GET /v1/installations/me.
type installation struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	ClientID  string `json:"clientId"`
	CompanyID string `json:"companyId"`
}

func TestAPI_Installation(t *testing.T) {
	inCompany := func(id string) func(url.Values) {
		return func(q url.Values) { q.Set("urn_pleo_params_oauth_subject", id) }
	}
	// dead asserts that every token of tk is dead, and its authorisation revoked because the
	// installation was deleted.
	dead := func(t *testing.T, srv *emulator.Server, authID string, tk tokens) {
		t.Helper()
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
			t.Errorf("API with a deleted installation's token: status %d, want 401", status)
		}
		if status, body := refresh(t, srv, tk.Refresh); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("refresh of a deleted installation: %d %v, want 400 invalid_grant", status, body)
		}
		for _, a := range srv.Report().Authorisations {
			if a.ID == authID && (a.State != emulator.AuthorisationRevoked || a.RevokedReason != emulator.RevokedInstallationDeleted) {
				t.Errorf("authorisation %s: state %s reason %q, want revoked installation_deleted", a.ID, a.State, a.RevokedReason)
			}
		}
	}

	t.Run("Get", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		tk := connect(t, srv)
		var got installation
		if status, _ := apiSend(t, srv, http.MethodGet, "/v1/installations/me", tk.Access, "", &got); status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		want := installation{ID: got.ID, Status: "AUTHORIZED", ClientID: testClient.ID, CompanyID: companyNordlys}
		if got != want || got.ID == "" {
			t.Errorf("installation %+v, want %+v", got, want)
		}
	})

	t.Run("DeleteRevokesEveryConnectionOfTheSubject", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		first := connect(t, srv)
		firstID := lastAuthorisation(t, srv).ID
		second := connect(t, srv) // the same company again: a second token family
		secondID := lastAuthorisation(t, srv).ID

		if status, _ := apiSend(t, srv, http.MethodDelete, "/v1/installations/me", first.Access, "", nil); status != http.StatusNoContent {
			t.Fatalf("DELETE: status %d, want 204", status)
		}
		dead(t, srv, firstID, first)
		dead(t, srv, secondID, second)
		// Nothing is left: the second connection's token died with the installation, so a
		// second DELETE is refused as unauthenticated. (The handler's 404 is only reachable
		// with a live token, which implies a live installation.)
		if status, _ := apiSend(t, srv, http.MethodDelete, "/v1/installations/me", second.Access, "", nil); status != http.StatusUnauthorized {
			t.Errorf("second DELETE: status %d, want 401", status)
		}
		if v := violations(srv); len(v) != 0 {
			t.Errorf("violations %v, want none: the client could not know of the deletion", v)
		}
	})

	t.Run("DeleteLeavesOtherSubjectsAndClients", func(t *testing.T) {
		other := emulator.Client{ID: "other-client", Secret: "other-secret", RedirectURIs: []string{"http://127.0.0.1:2/cb"}}
		srv := startServer(t, emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient, other}})
		nordlys := connectAs(t, srv, testClient, inCompany(companyNordlys))
		otherApp := connectAs(t, srv, other, inCompany(companyFjord))
		fjord := connectAs(t, srv, testClient, inCompany(companyFjord))
		fjordID := lastAuthorisation(t, srv).ID

		if status, _ := apiSend(t, srv, http.MethodDelete, "/v1/installations/me", fjord.Access, "", nil); status != http.StatusNoContent {
			t.Fatalf("DELETE: status %d, want 204", status)
		}
		dead(t, srv, fjordID, fjord)
		for name, tk := range map[string]tokens{"another company": nordlys, "another client": otherApp} {
			if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusOK {
				t.Errorf("%s: API status %d after an unrelated DELETE, want 200", name, status)
			}
		}
		if status, body := refresh(t, srv, nordlys.Refresh); status != http.StatusOK {
			t.Errorf("another company: refresh %d %v, want 200", status, body)
		}
		var states []string
		for _, a := range srv.Report().Authorisations {
			if a.ID != fjordID {
				states = append(states, a.State)
			}
		}
		if diff := cmp.Diff([]string{emulator.AuthorisationActive, emulator.AuthorisationActive}, states); diff != "" {
			t.Errorf("states of the untouched authorisations (-want +got):\n%s", diff)
		}
	})
}

// TestListen_SeparateAPIListener runs the API on a listener of its own.
func TestListen_SeparateAPIListener(t *testing.T) {
	srv, err := emulator.Listen(emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient}}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if srv.APIURL == srv.URL {
		t.Fatalf("APIURL %s equals URL", srv.APIURL)
	}
	tk := connect(t, srv)
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusOK {
		t.Errorf("API on APIURL: status %d, want 200", status)
	}
	bearer := http.Header{"Authorization": {"Bearer " + tk.Access}}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basicAuth(testClient)}}
	cases := []struct {
		name, method, url string
		header            http.Header
		body              string
	}{
		{"APINotOnAuthListener", http.MethodGet, srv.URL + "/v1/introspect", bearer, ""},
		{"TokenNotOnAPIListener", http.MethodPost, srv.APIURL + "/oauth/token", form, "grant_type=refresh_token&refresh_token=" + url.QueryEscape(tk.Refresh)},
		{"ControlNotOnAPIListener", http.MethodGet, srv.APIURL + "/_emulator/clock", nil, ""},
	}
	for _, tc := range cases {
		if status, _, _ := sendRaw(t, tc.method, tc.url, tc.header, tc.body); status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", tc.name, status)
		}
	}
	if status, body := refresh(t, srv, tk.Refresh); status != http.StatusOK {
		t.Errorf("the refresh token was touched by the API listener: %d %v", status, body)
	}
}

// TestAPI_SeededIDsAreUUIDs checks that every seeded id has the canonical UUID form, as
// Pleo's ids do, so a client that parses them as UUIDs works against the emulator.
func TestAPI_SeededIDsAreUUIDs(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tk := connect(t, srv)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	var ids []string
	for _, path := range []string{"/v2/employees?limit=100", "/v1/export-jobs"} {
		status, body, _ := apiGet(t, srv, path, tk.Access)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, status)
		}
		data, _ := body["data"].([]any)
		for _, item := range data {
			m, _ := item.(map[string]any)
			id, _ := m["id"].(string)
			company, _ := m["companyId"].(string)
			ids = append(ids, id, company)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no ids seen")
	}
	for _, id := range ids {
		if !uuid.MatchString(id) {
			t.Errorf("id %q is not a UUID", id)
		}
	}
}
