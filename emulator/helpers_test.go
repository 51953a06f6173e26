package emulator_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// testClient is the client every test registers unless it needs another.
var testClient = emulator.Client{
	ID:           "test-client",
	Secret:       "test secret/with:odd&chars",
	RedirectURIs: []string{"http://127.0.0.1:1/callback"},
	Name:         "Test App",
}

// startServer starts an emulator on loopback, closed when the test ends. A config without
// clients gets testClient.
func startServer(t testing.TB, cfg emulator.Config) *emulator.Server {
	t.Helper()
	if len(cfg.Clients) == 0 {
		cfg.Clients = []emulator.Client{testClient}
	}
	srv, err := emulator.NewServer(cfg)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// noRedirects is an HTTP client that returns redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// pkce returns a fresh RFC 7636 verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeQuery returns a valid authorise request for c, with the given challenge.
func authorizeQuery(c emulator.Client, challenge string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ID},
		"redirect_uri":          {c.RedirectURIs[0]},
		"state":                 {"st-123"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
		"scope":                 {"users:read export-jobs:read"},
	}
}

// authorize sends GET /oauth/authorize without following the redirect.
func authorize(t testing.TB, srv *emulator.Server, q url.Values) *http.Response {
	t.Helper()
	resp, err := noRedirects.Get(srv.URL + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// codeFrom reads the code from an auto-approved authorise redirect.
func codeFrom(t testing.TB, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize: status %d, want 303; body %s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize: bad Location: %v", err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("authorize: no code in %s", loc)
	}
	return code
}

// tokenCall posts form to the token endpoint with HTTP Basic credentials for c (unless
// c.ID is empty) and returns the status and decoded JSON body.
func tokenCall(t testing.TB, srv *emulator.Server, c emulator.Client, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	return postForm(t, srv.URL+"/oauth/token", c, form)
}

func postForm(t testing.TB, endpoint string, c emulator.Client, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.ID != "" {
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			t.Fatalf("POST %s: status %d, body is not JSON: %q", endpoint, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, body, resp.Header
}

// tokens is a token pair from a successful token response.
type tokens struct{ Access, Refresh string }

func tokensFrom(t testing.TB, status int, body map[string]any) tokens {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("token: status %d, body %v", status, body)
	}
	at, _ := body["access_token"].(string)
	rt, _ := body["refresh_token"].(string)
	if at == "" || rt == "" {
		t.Fatalf("token: missing tokens in %v", body)
	}
	return tokens{at, rt}
}

// connect runs the whole authorization-code flow for testClient on an auto-approving
// server and returns the first token pair.
func connect(t testing.TB, srv *emulator.Server) tokens {
	t.Helper()
	verifier, challenge := pkce()
	code := codeFrom(t, authorize(t, srv, authorizeQuery(testClient, challenge)))
	status, body, _ := tokenCall(t, srv, testClient, url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier},
	})
	return tokensFrom(t, status, body)
}

// refresh presents rt and returns the raw outcome.
func refresh(t testing.TB, srv *emulator.Server, rt string) (int, map[string]any) {
	t.Helper()
	status, body, _ := tokenCall(t, srv, testClient, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	return status, body
}

// apiGet calls the API with a bearer token and returns the status, body and headers.
func apiGet(t testing.TB, srv *emulator.Server, path, bearer string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.APIURL+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		_ = json.Unmarshal(data, &body)
	}
	return resp.StatusCode, body, resp.Header
}

// violations returns the rules of the ledger's violations, in order.
func violations(srv *emulator.Server) []string {
	var out []string
	for _, v := range srv.Report().Violations {
		out = append(out, v.Rule)
	}
	return out
}

// Helpers for the authorisation-server tests (authorize, token, introspect, naive client).

// codeFor runs an auto-approved authorise request for c and returns the code and its PKCE
// verifier.
func codeFor(t testing.TB, srv *emulator.Server, c emulator.Client) (code, verifier string) {
	t.Helper()
	verifier, challenge := pkce()
	return codeFrom(t, authorize(t, srv, authorizeQuery(c, challenge))), verifier
}

// exchangeCode redeems code at the token endpoint as client c, with c's first redirect URI.
// An empty verifier is left out of the request.
func exchangeCode(t testing.TB, srv *emulator.Server, c emulator.Client, code, verifier string) (int, map[string]any, http.Header) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.RedirectURIs[0]}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	return tokenCall(t, srv, c, form)
}

// refreshAs presents rt as client c, adding extra to the form.
func refreshAs(t testing.TB, srv *emulator.Server, c emulator.Client, rt string, extra url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	return tokenCall(t, srv, c, form)
}

// introspectAs posts token to POST /oauth/token/introspect with HTTP Basic credentials for
// c (none if c.ID is empty).
func introspectAs(t testing.TB, srv *emulator.Server, c emulator.Client, token string) (int, map[string]any, http.Header) {
	t.Helper()
	return postForm(t, srv.URL+"/oauth/token/introspect", c, url.Values{"token": {token}})
}

// basicAuth is the client_secret_basic Authorization value for c: id and secret
// form-encoded, then base64 (RFC 6749 §2.3.1).
func basicAuth(c emulator.Client) string {
	raw := url.QueryEscape(c.ID) + ":" + url.QueryEscape(c.Secret)
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

// sendRaw sends exactly the given method, headers and body, and returns the status, the
// body decoded as JSON (nil if empty or not JSON) and the headers.
func sendRaw(t testing.TB, method, endpoint string, header http.Header, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out, resp.Header
}

// lastAuthorisation returns the newest authorisation in the report.
func lastAuthorisation(t testing.TB, srv *emulator.Server) emulator.AuthorisationReport {
	t.Helper()
	auths := srv.Report().Authorisations
	if len(auths) == 0 {
		t.Fatal("the report lists no authorisation")
	}
	return auths[len(auths)-1]
}

// exchangeTokens redeems code as client c and returns the token pair, failing the test
// unless the exchange succeeds.
func exchangeTokens(t testing.TB, srv *emulator.Server, c emulator.Client, code, verifier string) tokens {
	t.Helper()
	status, body, _ := exchangeCode(t, srv, c, code, verifier)
	return tokensFrom(t, status, body)
}

// Helpers for the API, control-plane, fault and Remote tests.

// The seeded companies, in consent-page order. The first is consented to by default.
const (
	companyNordlys = "8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a" // 12 employees
	companyFjord   = "2b7e9a10-44f3-4c2d-8e5f-a0b1c2d3e4f5"
	companyLagom   = "c4d5e6f7-0812-4a3b-9c4d-5e6f70819203"
)

// connectAs runs the whole authorization-code flow for c on an auto-approving server and
// returns the first token pair. edit, if not nil, changes the authorise query first (to
// ask for other scopes, or name a subject with urn_pleo_params_oauth_subject).
func connectAs(t testing.TB, srv *emulator.Server, c emulator.Client, edit func(q url.Values)) tokens {
	t.Helper()
	verifier, challenge := pkce()
	q := authorizeQuery(c, challenge)
	if edit != nil {
		edit(q)
	}
	code := codeFrom(t, authorize(t, srv, q))
	status, body, _ := exchangeCode(t, srv, c, code, verifier)
	return tokensFrom(t, status, body)
}

// withScope returns an edit for connectAs that asks for scope.
func withScope(scope string) func(url.Values) {
	return func(q url.Values) { q.Set("scope", scope) }
}

// sendJSON sends method to endpoint with an optional bearer token and JSON body, decodes a
// JSON response into out (unless out is nil or the body is empty), and returns the status
// and headers. A transport error or an undecodable body fails the test.
func sendJSON(t testing.TB, method, endpoint, bearer, body string, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, endpoint, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, endpoint, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: status %d, body is not the expected JSON: %v: %q", method, endpoint, resp.StatusCode, err, data)
		}
	}
	return resp.StatusCode, resp.Header
}

// apiSend calls the API path with sendJSON.
func apiSend(t testing.TB, srv *emulator.Server, method, path, bearer, body string, out any) (int, http.Header) {
	t.Helper()
	return sendJSON(t, method, srv.APIURL+path, bearer, body, out)
}

// controlSend calls the control plane (path is relative to srv.ControlURL) with sendJSON.
func controlSend(t testing.TB, srv *emulator.Server, method, path, body string, out any) (int, http.Header) {
	t.Helper()
	return sendJSON(t, method, srv.ControlURL+path, "", body, out)
}

// doFunc sends one request and returns its response: over the network (an http.Client's
// Do, which must not follow redirects) or in-process (see inProcess in fuzz_test.go), so
// one flow serves tests, fuzz targets and benchmarks alike.
type doFunc func(*http.Request) (*http.Response, error)

// connectVia runs the authorization-code flow for c against an auto-approving emulator at
// base (any scheme and host will do in-process), sending each request with do, and
// returns the first token pair.
func connectVia(tb testing.TB, do doFunc, base string, c emulator.Client) tokens {
	tb.Helper()
	verifier, challenge := pkce()
	req, err := http.NewRequest(http.MethodGet, base+"/oauth/authorize?"+authorizeQuery(c, challenge).Encode(), nil)
	if err != nil {
		tb.Fatalf("authorize: %v", err)
	}
	resp, err := do(req)
	if err != nil {
		tb.Fatalf("authorize: %v", err)
	}
	defer resp.Body.Close()
	code := codeFrom(tb, resp)
	status, body := sendForm(tb, do, base+"/oauth/token", c, url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {c.RedirectURIs[0]}, "code_verifier": {verifier},
	})
	return tokensFrom(tb, status, body)
}

// sendForm posts form to endpoint with do, with HTTP Basic credentials for c encoded per
// RFC 6749 §2.3.1 (unless c.ID is empty), and returns the status and decoded JSON body.
func sendForm(tb testing.TB, do doFunc, endpoint string, c emulator.Client, form url.Values) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatalf("POST %s: %v", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.ID != "" {
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	}
	resp, err := do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			tb.Fatalf("POST %s: status %d, body is not JSON: %q", endpoint, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, body
}

// wantOAuthError checks an RFC 6749 §5.2 error response: the status, a JSON body of exactly
// error and a non-empty error_description, and Cache-Control: no-store.
func wantOAuthError(t testing.TB, status int, body map[string]any, h http.Header, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["error"] != wantCode {
		t.Errorf("got %d %v, want %d with error %q", status, body, wantStatus, wantCode)
	}
	desc, _ := body["error_description"].(string)
	if _, ok := body["error"].(string); !ok || desc == "" || len(body) != 2 {
		t.Errorf("error body %v, want exactly a string error and a non-empty error_description", body)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// mustRefresh presents rt as testClient and returns the new pair, failing the test unless
// the refresh succeeds.
func mustRefresh(t testing.TB, srv *emulator.Server, rt string) tokens {
	t.Helper()
	status, body := refresh(t, srv, rt)
	return tokensFrom(t, status, body)
}

// Helpers for the delivery and variant tests (lost responses, Close, variant faults).

// flagged is a violation's rule and whether it followed a lost response.
type flagged struct {
	Rule         string
	LostResponse bool
}

// flaggedViolations returns the ledger's violations, in order, as rules with their
// lost-response flag.
func flaggedViolations(srv *emulator.Server) []flagged {
	var out []flagged
	for _, v := range srv.Report().Violations {
		out = append(out, flagged{v.Rule, v.LostResponse})
	}
	return out
}

// waitFor polls cond every few milliseconds until it holds. The 5 s bound only keeps a
// broken emulator from hanging the test; it asserts nothing about speed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scriptConsumed reports whether the script of endpoint is spent: the request that drew
// its last entry has passed the fault injector (and sleeps in any latency it drew).
func scriptConsumed(srv *emulator.Server, endpoint string) func() bool {
	return func() bool { return len(srv.Faults()[endpoint].Script) == 0 }
}

// apiStatus calls GET /v1/introspect with bearer, for use from a goroutine.
func apiStatus(srv *emulator.Server, bearer string) apiResult {
	req, err := http.NewRequest(http.MethodGet, srv.APIURL+"/v1/introspect", nil)
	if err != nil {
		return apiResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiResult{err: err}
	}
	resp.Body.Close()
	return apiResult{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate")}
}

// apiResult is the outcome of apiStatus.
type apiResult struct {
	status    int
	challenge string // WWW-Authenticate
	err       error
}

// holdAPICall starts GET /v1/introspect with bearer and returns once the call has passed
// its first token check and waits in a 300 ms injected latency, so that the test can
// change the world under it. Whatever the test does meanwhile must take far less than
// that; it takes milliseconds. The call's outcome arrives on the channel.
func holdAPICall(t *testing.T, srv *emulator.Server, bearer string) <-chan apiResult {
	t.Helper()
	setFaults(t, srv, `{"api":{"latency":{"min":"300ms","max":"300ms"},"script":["none"]}}`)
	done := make(chan apiResult, 1)
	go func() { done <- apiStatus(srv, bearer) }()
	// The script is drawn after the first token check, before the latency.
	waitFor(t, "the API call to pass its first check", scriptConsumed(srv, emulator.EndpointAPI))
	return done
}

// await returns what ch delivers, failing the test if nothing comes within 10 s. The
// bound only keeps a broken emulator from hanging the test; it asserts nothing about speed.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10s for %s", what)
		panic("unreachable")
	}
}
