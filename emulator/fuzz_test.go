package emulator_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// The fuzz targets drive the emulator's parsers of outside input through its public
// surface, in-process (Handler with an httptest recorder), so an iteration costs
// microseconds. Their seed corpus is committed under testdata/fuzz/<FuzzName>/ and runs as
// ordinary tests; `go test -run=^$ -fuzz=^FuzzX$ ./emulator` explores further.

// fuzzBase is the base URL of in-process requests; the host is never dialled.
const fuzzBase = "http://emulator.test"

const formContentType = "application/x-www-form-urlencoded"

// Placeholders a token-endpoint body may carry; each iteration swaps in live values, so
// the fuzzer can reach the success paths of both grants.
const (
	phRefreshToken = "{{rt}}"       // a current refresh token of testClient
	phAuthCode     = "{{code}}"     // an unspent authorization code of testClient
	phCodeVerifier = "{{verifier}}" // the code_verifier of that code
)

// rfc6749TokenErrors is the RFC 6749 §5.2 error set.
var rfc6749TokenErrors = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true,
}

// rfc6749AuthorizeErrors is the RFC 6749 §4.1.2.1 error set.
var rfc6749AuthorizeErrors = map[string]bool{
	"invalid_request": true, "unauthorized_client": true, "access_denied": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true,
}

// inProcess serves each request with h through an httptest recorder: no network, so a
// fuzz iteration or a handler benchmark costs only the emulator's own work. It is a
// doFunc and never follows redirects.
func inProcess(h http.Handler) doFunc {
	return func(r *http.Request) (*http.Response, error) {
		if r.Body == nil {
			r.Body = http.NoBody
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result(), nil
	}
}

// rfcBasicHeader encodes client credentials per RFC 6749 §2.3.1: each part form-encoded, then
// HTTP Basic.
func rfcBasicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// newFuzzEmulator returns an emulator with testClient, failing the test if New does.
func newFuzzEmulator(t *testing.T, cfg emulator.Config) *emulator.Emulator {
	t.Helper()
	if len(cfg.Clients) == 0 {
		cfg.Clients = []emulator.Client{testClient}
	}
	e, err := emulator.New(cfg)
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	return e
}

// fuzzPostToken posts body to /oauth/token in-process. Empty authz or ctype sends no header.
func fuzzPostToken(h http.Handler, authz, ctype, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// fillTokenPlaceholders replaces the placeholders in body with live values from h.
func fillTokenPlaceholders(t *testing.T, h http.Handler, body string) string {
	t.Helper()
	if strings.Contains(body, phRefreshToken) {
		body = strings.ReplaceAll(body, phRefreshToken, connectVia(t, inProcess(h), fuzzBase, testClient).Refresh)
	}
	if strings.Contains(body, phAuthCode) || strings.Contains(body, phCodeVerifier) {
		verifier, challenge := pkce()
		req := httptest.NewRequest(http.MethodGet, "/oauth/authorize?"+authorizeQuery(testClient, challenge).Encode(), nil)
		resp, _ := inProcess(h)(req)
		body = strings.ReplaceAll(body, phAuthCode, codeFrom(t, resp))
		body = strings.ReplaceAll(body, phCodeVerifier, verifier)
	}
	return body
}

// checkTokenWire asserts that rec is an RFC 6749 §5.1 success or §5.2 error.
func checkTokenWire(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	switch rec.Code {
	case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusMethodNotAllowed:
	default:
		t.Fatalf("status %d, want 200, 400, 401 or 405; body %q", rec.Code, rec.Body.Bytes())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (RFC 6749 §5.1)", cc)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %v; %q", rec.Code, err, rec.Body.Bytes())
	}
	if rec.Code == http.StatusOK {
		for _, k := range []string{"access_token", "refresh_token"} {
			if s, _ := body[k].(string); s == "" {
				t.Errorf("200 without %s: %v", k, body)
			}
		}
		if body["token_type"] != "Bearer" {
			t.Errorf("200 with token_type %v, want Bearer", body["token_type"])
		}
		return body
	}
	if code, _ := body["error"].(string); !rfc6749TokenErrors[code] {
		t.Errorf("status %d with error %q, not an RFC 6749 §5.2 code; body %v", rec.Code, code, body)
	}
	if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate (RFC 6749 §5.2)")
	}
	return body
}

// FuzzTokenEndpoint fuzzes POST /oauth/token: the Basic header, the media type and the
// form body.
func FuzzTokenEndpoint(f *testing.F) {
	basic := rfcBasicHeader(testClient.ID, testClient.Secret)
	f.Add(basic, formContentType, "grant_type=refresh_token&refresh_token="+phRefreshToken)
	f.Add(basic, formContentType, "grant_type=authorization_code&code="+phAuthCode+"&redirect_uri="+
		url.QueryEscape(testClient.RedirectURIs[0])+"&code_verifier="+phCodeVerifier)
	f.Add(basic, formContentType, "grant_type=refresh_token&refresh_token=x&refresh_token=y")
	f.Add(basic, formContentType, "grant_type=%zz")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, authz, ctype, body string) {
		h := newFuzzEmulator(t, emulator.Config{AutoApprove: true}).Handler()
		body = fillTokenPlaceholders(t, h, body)
		checkTokenWire(t, fuzzPostToken(h, authz, ctype, body))
	})
}

// FuzzBasicCredentials fuzzes the client_secret_basic parser (RFC 6749 §2.3.1) with a raw
// header, and checks that form-encoded credentials round-trip for any registered client.
func FuzzBasicCredentials(f *testing.F) {
	f.Add(rfcBasicHeader(testClient.ID, testClient.Secret), testClient.ID, testClient.Secret)
	f.Add("Basic "+base64.StdEncoding.EncodeToString([]byte(":secret")), "x", "y")
	f.Add("Bearer x", testClient.ID, "wrong")
	f.Add("", "ünï cødé", "p@ss:w+rd/%20")
	const body = "grant_type=refresh_token&refresh_token=x"
	f.Fuzz(func(t *testing.T, header, id, secret string) {
		h := newFuzzEmulator(t, emulator.Config{}).Handler()

		// Any header: never a success (the refresh token is unknown), never a 5xx.
		rec := fuzzPostToken(h, header, formContentType, body)
		if rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnauthorized {
			t.Fatalf("raw header: status %d, want 400 or 401; body %q", rec.Code, rec.Body.Bytes())
		}
		checkTokenWire(t, rec)

		// Well-formed credentials that are not the registered client's are refused.
		rec = fuzzPostToken(h, rfcBasicHeader(id, secret), formContentType, body)
		checkTokenWire(t, rec)
		genuine := id == testClient.ID && secret == testClient.Secret
		if !genuine && rec.Code != http.StatusUnauthorized {
			t.Fatalf("credentials %q:%q authenticated as %q: status %d, want 401", id, secret, testClient.ID, rec.Code)
		}
		if genuine && rec.Code == http.StatusUnauthorized {
			t.Fatalf("the registered client's own credentials were refused: %q", rec.Body.Bytes())
		}

		// Round trip: a client registered with these credentials authenticates with them.
		if id == "" || secret == "" {
			return
		}
		own, err := emulator.New(emulator.Config{Clients: []emulator.Client{{
			ID: id, Secret: secret, RedirectURIs: testClient.RedirectURIs,
		}}})
		if err != nil {
			t.Skipf("emulator.New rejects client %q: %v", id, err)
		}
		rec = fuzzPostToken(own.Handler(), rfcBasicHeader(id, secret), formContentType, body)
		checkTokenWire(t, rec)
		if rec.Code == http.StatusUnauthorized {
			t.Fatalf("client %q with secret %q did not authenticate with its RFC 6749 §2.3.1 encoding: %q", id, secret, rec.Body.Bytes())
		}
	})
}

// authzClient is the client FuzzAuthorize registers: one redirect URI with a query of its
// own, which the redirect must keep (RFC 6749 §3.1.2).
var authzClient = emulator.Client{
	ID:           "authz-client",
	Secret:       "authz-secret",
	RedirectURIs: []string{"http://127.0.0.1:1/callback", "https://app.example/cb?tenant=a+b"},
}

// rfc7636Challenge is the S256 challenge of the verifier in RFC 7636 Appendix B.
const rfc7636Challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

// FuzzAuthorize fuzzes the raw query of GET /oauth/authorize, on an auto-approving
// emulator and on one that shows the consent page.
func FuzzAuthorize(f *testing.F) {
	valid := url.Values{
		"response_type": {"code"}, "client_id": {authzClient.ID}, "redirect_uri": {authzClient.RedirectURIs[0]},
		"state": {"st"}, "code_challenge": {rfc7636Challenge}, "code_challenge_method": {"S256"}, "scope": {"users:read"},
	}
	f.Add(valid.Encode())
	open := url.Values{}
	for k, v := range valid {
		open[k] = v
	}
	open.Set("redirect_uri", "https://evil.example/cb")
	f.Add(open.Encode())
	f.Add("client_id=authz-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback&response_type=token&state=s")
	f.Add("%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		q, qerr := url.ParseQuery(raw)
		for _, auto := range []bool{true, false} {
			h := newFuzzEmulator(t, emulator.Config{Clients: []emulator.Client{authzClient}, AutoApprove: auto}).Handler()
			req := httptest.NewRequest(http.MethodGet, "/oauth/authorize", nil)
			req.URL.RawQuery = raw // set directly: NewRequest would panic on a bad target
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			loc := rec.Header().Get("Location")
			switch rec.Code {
			case http.StatusOK:
				if auto {
					t.Fatalf("auto-approve: status 200, want a redirect or an error page")
				}
				if loc != "" {
					t.Fatalf("consent page with Location %q", loc)
				}
			case http.StatusSeeOther:
				if qerr != nil {
					t.Fatalf("redirected a malformed query (%v) to %q", qerr, loc)
				}
				checkAuthorizeRedirect(t, loc, q, auto)
			case http.StatusBadRequest, http.StatusMethodNotAllowed:
				if loc != "" {
					t.Fatalf("error page %d with Location %q", rec.Code, loc)
				}
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Fatalf("error page with Content-Type %q", ct)
				}
			default:
				t.Fatalf("auto=%v: status %d, want 200, 303, 400 or 405; body %q", auto, rec.Code, rec.Body.Bytes())
			}
		}
	})
}

// checkAuthorizeRedirect asserts that loc goes back to the redirect URI the request named,
// which must be registered exactly, and carries either code and state or an error.
func checkAuthorizeRedirect(t *testing.T, loc string, q url.Values, auto bool) {
	t.Helper()
	asked := q.Get("redirect_uri")
	if !slices.Contains(authzClient.RedirectURIs, asked) {
		t.Fatalf("redirected for the unregistered redirect_uri %q to %q", asked, loc)
	}
	reg, _ := url.Parse(asked)
	prefix := reg.Scheme + "://" + reg.Host + reg.Path + "?"
	if !strings.HasPrefix(loc, prefix) {
		t.Fatalf("Location %q does not start with the registered %q", loc, prefix)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	got := u.Query()
	code, state, errCode := got.Get("code"), got.Get("state"), got.Get("error")
	for _, k := range []string{"code", "state", "error", "error_description"} {
		got.Del(k)
	}
	if got.Encode() != reg.Query().Encode() {
		t.Fatalf("Location %q lost or changed the registered query %q", loc, reg.RawQuery)
	}
	if state != q.Get("state") {
		t.Fatalf("Location %q has state %q, want %q", loc, state, q.Get("state"))
	}
	switch {
	case code != "" && errCode != "":
		t.Fatalf("Location %q carries both a code and an error", loc)
	case code != "":
		if !auto {
			t.Fatalf("a code before consent: %q", loc)
		}
		if state == "" {
			t.Fatalf("a code without state: %q", loc)
		}
	case errCode != "":
		if !rfc6749AuthorizeErrors[errCode] {
			t.Fatalf("Location %q: error %q is not an RFC 6749 §4.1.2.1 code", loc, errCode)
		}
	default:
		t.Fatalf("Location %q carries neither a code nor an error", loc)
	}
}

// FuzzAPIBearer fuzzes the bearer-token parser (RFC 6750 §2.1) of the API. No token was
// ever issued, so every request must be refused with a Bearer challenge.
func FuzzAPIBearer(f *testing.F) {
	f.Add("Bearer pat_abc")
	f.Add("")
	f.Add("bearer    ")
	f.Add("Basic dGVzdDp0ZXN0")
	e, err := emulator.New(emulator.Config{Clients: []emulator.Client{testClient}})
	if err != nil {
		f.Fatal(err)
	}
	h := e.Handler()
	f.Fuzz(func(t *testing.T, header string) {
		for _, path := range []string{"/v1/introspect", "/v2/employees"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", header)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("GET %s: status %d, want 401 (no token was issued); body %q", path, rec.Code, rec.Body.Bytes())
			}
			if ch := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
				t.Fatalf("GET %s: WWW-Authenticate %q, want a Bearer challenge (RFC 6750 §3)", path, ch)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("GET %s: Content-Type %q", path, ct)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["type"] != "invalid_token" {
				t.Fatalf("GET %s: body %q, want a JSON invalid_token error", path, rec.Body.Bytes())
			}
		}
	})
}

// FuzzControlFaults fuzzes PUT /_emulator/faults: a bad body changes nothing, and a good
// one is what GET returns afterwards, which PUT accepts again unchanged.
func FuzzControlFaults(f *testing.F) {
	f.Add(`{"token":{"error_503":0.25,"retry_after":"2s","script":["error_500","none"]}}`)
	f.Add(`null`)
	f.Add(`{"token":{"error_500":0.6,"error_503":0.6}}`)
	f.Add(`{"bogus":{}}`)
	f.Add(``)
	e, err := emulator.New(emulator.Config{Clients: []emulator.Client{testClient}})
	if err != nil {
		f.Fatal(err)
	}
	h := e.Handler()
	initial := emulator.Faults{
		emulator.EndpointAPI: {Error429: 0.1, Latency: &emulator.Latency{
			Min: emulator.Duration(1e6), Max: emulator.Duration(2e6)}},
		emulator.EndpointToken: {Script: []string{emulator.Fault503, emulator.FaultNone}},
	}
	do := func(t *testing.T, method, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, "/_emulator/faults", strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// A body over the 1 MiB limit is checked once here rather than seeded: it is too big to
	// commit, and mutating it would slow the fuzzer down to a crawl.
	huge := `{"token":{"script":[` + strings.Repeat(`"none",`, 150_000) + `"none"]}}`
	req := httptest.NewRequest(http.MethodPut, "/_emulator/faults", strings.NewReader(huge))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		f.Fatalf("PUT of %d bytes: status %d, want 400", len(huge), rec.Code)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if err := e.SetFaults(initial); err != nil {
			t.Fatal(err)
		}
		before := do(t, http.MethodGet, "").Body.String()
		put := do(t, http.MethodPut, body)
		after := do(t, http.MethodGet, "").Body.String()
		switch put.Code {
		case http.StatusBadRequest:
			var msg map[string]any
			if err := json.Unmarshal(put.Body.Bytes(), &msg); err != nil || msg["error"] == "" || msg["error"] == nil {
				t.Fatalf("400 without a JSON error: %q", put.Body.Bytes())
			}
			if after != before {
				t.Fatalf("a refused PUT changed the faults:\nbefore %s\nafter  %s", before, after)
			}
		case http.StatusOK:
			if put.Body.String() != after {
				t.Fatalf("PUT answered %s but GET answers %s", put.Body.String(), after)
			}
			again := do(t, http.MethodPut, after)
			if again.Code != http.StatusOK || !bytes.Equal(again.Body.Bytes(), []byte(after)) {
				t.Fatalf("the faults GET returned do not round-trip through PUT: %d %s, want %s", again.Code, again.Body.String(), after)
			}
		default:
			t.Fatalf("status %d, want 200 or 400; body %q", put.Code, put.Body.Bytes())
		}
	})
}
