package emulator_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// Subject URNs of the seeded companies (helpers_test.go names their ids).
const (
	nordlysURN = "urn:pleo:company:" + companyNordlys
	fjordURN   = "urn:pleo:company:" + companyFjord
)

var (
	consentRequestRE = regexp.MustCompile(`name="request" value="([^"]+)"`)
	consentCompanyRE = regexp.MustCompile(`name="company" value="([^"]+)"`)
)

// readPage reads an HTML response body.
func readPage(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read page: %v", err)
	}
	return string(b)
}

// wantPage checks that resp is an HTML page with status and the pages' security headers,
// and that it redirects nowhere.
func wantPage(t *testing.T, resp *http.Response, status int) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d", resp.StatusCode, status)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("Location = %q, want none: an unverified client must not be redirected to", loc)
	}
	for k, want := range map[string]string{
		"Content-Type":    "text/html; charset=utf-8",
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	return readPage(t, resp)
}

// redirectParams checks that resp is a 303 to the registered redirect URI and returns its
// query.
func redirectParams(t *testing.T, resp *http.Response, registered string) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("status = %d, want 303; body %s", resp.StatusCode, readPage(t, resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v", err)
	}
	reg, _ := url.Parse(registered)
	if loc.Scheme != reg.Scheme || loc.Host != reg.Host || loc.Path != reg.Path {
		t.Fatalf("redirected to %s, want the registered %s", loc, registered)
	}
	return loc.Query()
}

// consentPage asks for the consent page of a fresh request for c and returns the page and
// the request's PKCE verifier.
func consentPage(t *testing.T, srv *emulator.Server, c emulator.Client) (page, verifier string) {
	t.Helper()
	verifier, challenge := pkce()
	return wantPage(t, authorize(t, srv, authorizeQuery(c, challenge)), http.StatusOK), verifier
}

// postConsent answers a consent page without following the redirect.
func postConsent(t *testing.T, srv *emulator.Server, form url.Values) *http.Response {
	t.Helper()
	resp, err := noRedirects.PostForm(srv.URL+"/oauth/authorize/consent", form)
	if err != nil {
		t.Fatalf("post consent: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func consentRequestID(t *testing.T, page string) string {
	t.Helper()
	m := consentRequestRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no hidden request input in the consent page:\n%s", page)
	}
	return m[1]
}

func TestAuthorize_ErrorPage(t *testing.T) {
	reg := testClient.RedirectURIs[0]
	tests := []struct {
		name   string
		mutate func(q url.Values)
	}{
		{"MissingClientID", func(q url.Values) { q.Del("client_id") }},
		{"UnknownClientID", func(q url.Values) { q.Set("client_id", "nobody") }},
		{"RepeatedClientID", func(q url.Values) { q["client_id"] = []string{testClient.ID, testClient.ID} }},
		{"MissingRedirectURI", func(q url.Values) { q.Del("redirect_uri") }},
		{"RedirectURITrailingSlash", func(q url.Values) { q.Set("redirect_uri", reg+"/") }},
		{"RedirectURIOtherPort", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:2/callback") }},
		{"RedirectURIExtraQuery", func(q url.Values) { q.Set("redirect_uri", reg+"?next=/admin") }},
		{"RedirectURIPathCase", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:1/Callback") }},
		{"RedirectURIOtherHost", func(q url.Values) { q.Set("redirect_uri", "http://localhost:1/callback") }},
		{"RepeatedRedirectURI", func(q url.Values) { q["redirect_uri"] = []string{reg, reg} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			_, challenge := pkce()
			q := authorizeQuery(testClient, challenge)
			tt.mutate(q)
			page := wantPage(t, authorize(t, srv, q), http.StatusBadRequest)
			if !strings.Contains(page, "cannot continue") {
				t.Errorf("page is not the error page:\n%s", page)
			}
			if n := len(srv.Report().Authorisations); n != 0 {
				t.Errorf("%d authorisations created, want 0", n)
			}
		})
	}
}

func TestAuthorize_ErrorRedirect(t *testing.T) {
	restricted := emulator.Client{
		ID: "restricted-client", Secret: "restricted-secret",
		RedirectURIs: []string{"http://127.0.0.1:1/restricted"}, Scopes: []string{"users:read"},
	}
	tests := []struct {
		name          string
		client        emulator.Client
		mutate        func(q url.Values)
		wantError     string
		wantViolation []string
	}{
		{"MissingResponseType", testClient, func(q url.Values) { q.Del("response_type") }, "invalid_request", nil},
		{"ResponseTypeToken", testClient, func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", nil},
		{"MissingState", testClient, func(q url.Values) { q.Del("state") }, "invalid_request", nil},
		{"MissingCodeChallenge", testClient, func(q url.Values) {
			q.Del("code_challenge")
			q.Del("code_challenge_method")
		}, "invalid_request", []string{emulator.RulePKCEMissing}},
		{"PlainChallengeMethod", testClient, func(q url.Values) {
			q.Set("code_challenge_method", "plain")
		}, "invalid_request", []string{emulator.RulePKCEMissing}},
		{"MissingChallengeMethod", testClient, func(q url.Values) {
			q.Del("code_challenge_method") // RFC 7636 §4.3: absent means plain
		}, "invalid_request", []string{emulator.RulePKCEMissing}},
		{"ChallengeTooShort", testClient, func(q url.Values) {
			q.Set("code_challenge", q.Get("code_challenge")[:42])
		}, "invalid_request", nil},
		{"ChallengeBadCharacters", testClient, func(q url.Values) {
			q.Set("code_challenge", "+"+q.Get("code_challenge")[1:])
		}, "invalid_request", nil},
		{"UnknownScope", testClient, func(q url.Values) { q.Set("scope", "users:read payroll:write") }, "invalid_scope", nil},
		{"EmptyScope", testClient, func(q url.Values) { q.Set("scope", " ") }, "invalid_scope", nil},
		{"ScopeNotAllowedForClient", restricted, func(q url.Values) {
			q.Set("scope", "users:read export-jobs:read")
		}, "invalid_scope", nil},
		{"RepeatedScope", testClient, func(q url.Values) {
			q["scope"] = []string{"users:read", "export-jobs:read"}
		}, "invalid_request", nil},
		{"UnknownSubject", testClient, func(q url.Values) {
			q.Set("urn_pleo_params_oauth_subject", "urn:pleo:company:00000000-0000-4000-8000-000000000000")
		}, "invalid_request", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient, restricted}})
			_, challenge := pkce()
			q := authorizeQuery(tt.client, challenge)
			tt.mutate(q)
			got := redirectParams(t, authorize(t, srv, q), tt.client.RedirectURIs[0])
			if got.Get("error") != tt.wantError {
				t.Errorf("error = %q, want %q (%s)", got.Get("error"), tt.wantError, got.Get("error_description"))
			}
			if got.Has("code") {
				t.Errorf("an error redirect carries a code")
			}
			if want := q.Get("state"); got.Get("state") != want {
				t.Errorf("state = %q, want %q", got.Get("state"), want)
			}
			if diff := cmp.Diff(tt.wantViolation, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthorize_Consent(t *testing.T) {
	t.Run("PageNamesAppAndCompanies", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		page, _ := consentPage(t, srv, testClient)
		for _, want := range []string{"Test App", "Nordlys ApS", "Fjord Freight AS", "Lagom Design AB", "users:read", "export-jobs:read"} {
			if !strings.Contains(page, want) {
				t.Errorf("consent page does not mention %q", want)
			}
		}
		if n := len(consentCompanyRE.FindAllString(page, -1)); n != 3 {
			t.Errorf("consent page offers %d companies, want 3", n)
		}
		if n := len(srv.Report().Authorisations); n != 0 {
			t.Errorf("%d authorisations before consent, want 0", n)
		}
	})
	t.Run("Approve", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		page, verifier := consentPage(t, srv, testClient)
		resp := postConsent(t, srv, url.Values{
			"request": {consentRequestID(t, page)}, "company": {companyFjord}, "decision": {"approve"}})
		got := redirectParams(t, resp, testClient.RedirectURIs[0])
		if got.Get("state") != "st-123" || got.Get("code") == "" || got.Has("error") {
			t.Fatalf("redirect query = %v, want a code and state st-123", got)
		}
		exchangeTokens(t, srv, testClient, got.Get("code"), verifier)
		if a := lastAuthorisation(t, srv); a.Subject != fjordURN || a.State != emulator.AuthorisationActive {
			t.Errorf("authorisation = %+v, want an active one for %s", a, fjordURN)
		}
	})
	t.Run("Deny", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		page, _ := consentPage(t, srv, testClient)
		resp := postConsent(t, srv, url.Values{
			"request": {consentRequestID(t, page)}, "company": {companyFjord}, "decision": {"deny"}})
		got := redirectParams(t, resp, testClient.RedirectURIs[0])
		if got.Get("error") != "access_denied" || got.Get("state") != "st-123" || got.Has("code") {
			t.Errorf("redirect query = %v, want error=access_denied and state st-123", got)
		}
		if n := len(srv.Report().Authorisations); n != 0 {
			t.Errorf("%d authorisations after a denial, want 0", n)
		}
	})
	t.Run("RequestIDSingleUse", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		page, _ := consentPage(t, srv, testClient)
		form := url.Values{"request": {consentRequestID(t, page)}, "company": {companyFjord}, "decision": {"approve"}}
		redirectParams(t, postConsent(t, srv, form), testClient.RedirectURIs[0])
		wantPage(t, postConsent(t, srv, form), http.StatusBadRequest)
		if n := len(srv.Report().Authorisations); n != 1 {
			t.Errorf("%d authorisations, want 1", n)
		}
	})
	for _, tt := range []struct {
		name      string
		age       time.Duration
		wantAuths int
	}{
		{"NineMinutesOld", 9*time.Minute + 59*time.Second, 1},
		{"TenMinutesOld", 10*time.Minute + time.Second, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{})
			page, _ := consentPage(t, srv, testClient)
			if _, err := srv.Advance(tt.age); err != nil {
				t.Fatal(err)
			}
			resp := postConsent(t, srv, url.Values{
				"request": {consentRequestID(t, page)}, "company": {companyFjord}, "decision": {"approve"}})
			if tt.wantAuths == 0 {
				wantPage(t, resp, http.StatusBadRequest)
			} else {
				redirectParams(t, resp, testClient.RedirectURIs[0])
			}
			if n := len(srv.Report().Authorisations); n != tt.wantAuths {
				t.Errorf("%d authorisations, want %d", n, tt.wantAuths)
			}
		})
	}
	t.Run("UnknownRequest", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		resp := postConsent(t, srv, url.Values{"request": {"forged"}, "company": {companyFjord}, "decision": {"approve"}})
		wantPage(t, resp, http.StatusBadRequest)
	})
}

func TestAuthorize_AutoApprove(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		want    string
	}{
		{"FirstCompanyByDefault", "", nordlysURN},
		{"SubjectURN", fjordURN, fjordURN},
		{"SubjectBareID", companyFjord, fjordURN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true})
			verifier, challenge := pkce()
			q := authorizeQuery(testClient, challenge)
			if tt.subject != "" {
				q.Set("urn_pleo_params_oauth_subject", tt.subject)
			}
			code := codeFrom(t, authorize(t, srv, q))
			if a := lastAuthorisation(t, srv); a.Subject != tt.want || a.State != emulator.AuthorisationPending {
				t.Errorf("authorisation = %+v, want a pending one for %s", a, tt.want)
			}
			tok := exchangeTokens(t, srv, testClient, code, verifier)
			status, body, _ := apiGet(t, srv, "/v1/introspect", tok.Access)
			if status != http.StatusOK || body["subjectURN"] != tt.want {
				t.Errorf("GET /v1/introspect = %d %v, want subjectURN %s", status, body, tt.want)
			}
		})
	}
}

func TestAuthorize_NewAuthorisationPerConsent(t *testing.T) {
	srv := startServer(t, emulator.Config{})
	for range 2 {
		page, _ := consentPage(t, srv, testClient)
		resp := postConsent(t, srv, url.Values{
			"request": {consentRequestID(t, page)}, "company": {companyFjord}, "decision": {"approve"}})
		redirectParams(t, resp, testClient.RedirectURIs[0])
	}
	auths := srv.Report().Authorisations
	if len(auths) != 2 {
		t.Fatalf("%d authorisations, want 2", len(auths))
	}
	if auths[0].ID == auths[1].ID || auths[0].ID == "" {
		t.Errorf("authorisation ids %q and %q, want two distinct ids", auths[0].ID, auths[1].ID)
	}
	if auths[0].Subject != fjordURN || auths[1].Subject != fjordURN {
		t.Errorf("subjects %q and %q, want both %s", auths[0].Subject, auths[1].Subject, fjordURN)
	}
}

func TestAuthorize_RedirectURIQueryKept(t *testing.T) {
	c := testClient
	c.RedirectURIs = []string{"http://127.0.0.1:1/callback?tenant=acme&mode=x"}
	srv := startServer(t, emulator.Config{AutoApprove: true, Clients: []emulator.Client{c}})
	tests := []struct {
		name   string
		mutate func(q url.Values)
		want   []string // keys besides tenant and mode
	}{
		{"Code", func(url.Values) {}, []string{"code", "state"}},
		{"Error", func(q url.Values) { q.Del("response_type") }, []string{"error", "error_description", "state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, challenge := pkce()
			q := authorizeQuery(c, challenge)
			tt.mutate(q)
			got := redirectParams(t, authorize(t, srv, q), c.RedirectURIs[0])
			if got.Get("tenant") != "acme" || got.Get("mode") != "x" {
				t.Errorf("redirect query %v lost the registered tenant=acme&mode=x", got)
			}
			for _, k := range tt.want {
				if got.Get(k) == "" {
					t.Errorf("redirect query %v has no %s", got, k)
				}
			}
		})
	}
}

func TestAuthorize_SecurityHeaders(t *testing.T) {
	// wantPage checks no-store, X-Frame-Options DENY and the HTML type.
	t.Run("ConsentPage", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		resp := authorize(t, srv, authorizeQuery(testClient, "x"+strings.Repeat("a", 42)))
		wantPage(t, resp, http.StatusOK)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("Content-Security-Policy = %q, want frame-ancestors 'none'", csp)
		}
	})
	t.Run("ErrorPage", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		wantPage(t, authorize(t, srv, url.Values{"client_id": {"nobody"}}), http.StatusBadRequest)
	})
	t.Run("Redirect", func(t *testing.T) {
		srv := startServer(t, emulator.Config{AutoApprove: true})
		_, challenge := pkce()
		resp := authorize(t, srv, authorizeQuery(testClient, challenge))
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control on the code redirect = %q, want no-store", got)
		}
	})
	t.Run("MethodNotAllowed", func(t *testing.T) {
		srv := startServer(t, emulator.Config{})
		resp, err := noRedirects.Post(srv.URL+"/oauth/authorize", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		wantPage(t, resp, http.StatusMethodNotAllowed)
		if got := resp.Header.Get("Allow"); got != http.MethodGet {
			t.Errorf("Allow = %q, want GET", got)
		}
	})
}
