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
