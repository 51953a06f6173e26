package emulator_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// otherClient is a second registered client with the same redirect URI as testClient, so
// that only the client identity differs.
var otherClient = emulator.Client{
	ID: "other-client", Secret: "other-secret", RedirectURIs: testClient.RedirectURIs, Name: "Other App",
}

// startTokenServer starts an auto-approving emulator with testClient and otherClient.
func startTokenServer(t *testing.T, cfg emulator.Config) *emulator.Server {
	t.Helper()
	cfg.AutoApprove = true
	cfg.Clients = []emulator.Client{testClient, otherClient}
	return startServer(t, cfg)
}

func formHeader(auth string) http.Header {
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return h
}

func advanceClock(t *testing.T, srv *emulator.Server, d time.Duration) {
	t.Helper()
	if _, err := srv.Advance(d); err != nil {
		t.Fatal(err)
	}
}

func TestToken_ClientAuth(t *testing.T) {
	t.Run("BasicFormEncoded", func(t *testing.T) {
		// testClient's secret holds a space, "/", ":" and "&": it only matches if the
		// server form-decodes the Basic credentials (RFC 6749 §2.3.1).
		srv := startTokenServer(t, emulator.Config{})
		code, verifier := codeFor(t, srv, testClient)
		exchangeTokens(t, srv, testClient, code, verifier)
		if v := violations(srv); v != nil {
			t.Errorf("violations = %v, want none", v)
		}
	})
	wrong := testClient
	wrong.Secret = "test secret/with:odd&chars!"
	tests := []struct {
		name          string
		auth          string
		body          url.Values
		wantStatus    int
		wantError     string
		wantViolation []string
	}{
		{"WrongSecret", basicAuth(wrong), nil, 401, "invalid_client", nil},
		{"UnknownClient", basicAuth(emulator.Client{ID: "nobody", Secret: "x"}), nil, 401, "invalid_client", nil},
		{"NoAuth", "", nil, 401, "invalid_client", nil},
		{"BasicBadBase64", "Basic !!not-base64!!", nil, 401, "invalid_client", nil},
		{"BasicNoColon", "Basic " + base64.StdEncoding.EncodeToString([]byte("test-client")), nil, 401, "invalid_client", nil},
		{"BasicBadEscape", "Basic " + base64.StdEncoding.EncodeToString([]byte("test-client:%zz")), nil, 401, "invalid_client", nil},
		{"BodyCredentials", "", url.Values{"client_id": {testClient.ID}, "client_secret": {testClient.Secret}},
			401, "invalid_client", []string{emulator.RuleClientAuthMethod}},
		{"BasicAndBodySecret", basicAuth(testClient), url.Values{"client_secret": {testClient.Secret}},
			400, "invalid_request", nil},
		{"BasicAndOtherBodyClientID", basicAuth(testClient), url.Values{"client_id": {otherClient.ID}},
			400, "invalid_request", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTokenServer(t, emulator.Config{})
			code, verifier := codeFor(t, srv, testClient)
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier}}
			for k, v := range tt.body {
				form[k] = v
			}
			status, body, h := sendRaw(t, http.MethodPost, srv.URL+"/oauth/token", formHeader(tt.auth), form.Encode())
			wantOAuthError(t, status, body, h, tt.wantStatus, tt.wantError)
			if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge (RFC 6749 §5.2)", h.Get("WWW-Authenticate"))
			}
			if diff := cmp.Diff(tt.wantViolation, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("ClientSecretPostAllowed", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{AllowClientSecretPost: true})
		code, verifier := codeFor(t, srv, testClient)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier},
			"client_id": {testClient.ID}, "client_secret": {testClient.Secret}}
		status, body, _ := postForm(t, srv.URL+"/oauth/token", emulator.Client{}, form)
		tokensFrom(t, status, body)
		if v := violations(srv); v != nil {
			t.Errorf("violations = %v, want none", v)
		}
	})
}

func TestToken_RequestShape(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
		wantError   string
	}{
		{"GET", http.MethodGet, "", "", 405, "invalid_request"},
		{"PUT", http.MethodPut, form, "grant_type=refresh_token&refresh_token=x", 405, "invalid_request"},
		{"JSONContentType", http.MethodPost, "application/json", `{"grant_type":"refresh_token"}`, 400, "invalid_request"},
		{"NoContentType", http.MethodPost, "", "grant_type=refresh_token&refresh_token=x", 400, "invalid_request"},
		{"BodyOver16KiB", http.MethodPost, form, "grant_type=refresh_token&refresh_token=" + strings.Repeat("a", 16<<10), 400, "invalid_request"},
		{"MalformedEscape", http.MethodPost, form, "grant_type=refresh_token&refresh_token=%zz", 400, "invalid_request"},
		{"RepeatedParameter", http.MethodPost, form, "grant_type=refresh_token&refresh_token=a&refresh_token=b", 400, "invalid_request"},
		{"RepeatedGrantType", http.MethodPost, form, "grant_type=refresh_token&grant_type=refresh_token&refresh_token=a", 400, "invalid_request"},
		{"MissingGrantType", http.MethodPost, form, "refresh_token=x", 400, "invalid_request"},
		{"PasswordGrant", http.MethodPost, form, "grant_type=password&username=a&password=b", 400, "unsupported_grant_type"},
		{"ClientCredentialsGrant", http.MethodPost, form, "grant_type=client_credentials", 400, "unsupported_grant_type"},
		{"RefreshWithoutToken", http.MethodPost, form, "grant_type=refresh_token", 400, "invalid_request"},
		{"CodeWithoutCode", http.MethodPost, form, "grant_type=authorization_code&redirect_uri=x&code_verifier=y", 400, "invalid_request"},
		{"CodeWithoutRedirectURI", http.MethodPost, form, "grant_type=authorization_code&code=x&code_verifier=y", 400, "invalid_request"},
		// The shape is fine here; the token is not.
		{"CharsetParameterAccepted", http.MethodPost, form + "; charset=UTF-8", "grant_type=refresh_token&refresh_token=x", 400, "invalid_grant"},
	}
	srv := startTokenServer(t, emulator.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := formHeader(basicAuth(testClient))
			h.Del("Content-Type")
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			status, body, rh := sendRaw(t, tt.method, srv.URL+"/oauth/token", h, tt.body)
			wantOAuthError(t, status, body, rh, tt.wantStatus, tt.wantError)
			if status == http.StatusMethodNotAllowed && rh.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rh.Get("Allow"))
			}
		})
	}
}

func TestToken_AuthorizationCode(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{AccessTokenTTL: 7 * time.Minute})
		code, verifier := codeFor(t, srv, testClient)
		status, body, h := exchangeCode(t, srv, testClient, code, verifier)
		tok := tokensFrom(t, status, body)
		want := map[string]any{"access_token": tok.Access, "refresh_token": tok.Refresh,
			"token_type": "Bearer", "expires_in": float64(420), "scope": "export-jobs:read users:read"}
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("token response (-want +got):\n%s", diff)
		}
		for k, v := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
			if h.Get(k) != v {
				t.Errorf("%s = %q, want %q", k, h.Get(k), v)
			}
		}
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tok.Access); status != http.StatusOK {
			t.Errorf("API with the new access token: %d, want 200", status)
		}
		if a := lastAuthorisation(t, srv); a.State != emulator.AuthorisationActive {
			t.Errorf("authorisation state %q, want active", a.State)
		}
	})
	t.Run("ReplayRevokesItsTokens", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		code, verifier := codeFor(t, srv, testClient)
		tok := exchangeTokens(t, srv, testClient, code, verifier)
		status, body, h := exchangeCode(t, srv, testClient, code, verifier)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		if status, _, _ := apiGet(t, srv, "/v1/introspect", tok.Access); status != http.StatusUnauthorized {
			t.Errorf("API with a token from the replayed code: %d, want 401", status)
		}
		status, body, h = refreshAs(t, srv, testClient, tok.Refresh, nil)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		a := lastAuthorisation(t, srv)
		if a.State != emulator.AuthorisationRevoked || a.RevokedReason != emulator.RevokedAuthorizationCodeUsed {
			t.Errorf("authorisation %s/%s, want revoked/%s", a.State, a.RevokedReason, emulator.RevokedAuthorizationCodeUsed)
		}
	})
	t.Run("AuthorisationRevokedBeforeExchange", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		code, verifier := codeFor(t, srv, testClient)
		if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
			t.Fatal(err)
		}
		status, body, h := exchangeCode(t, srv, testClient, code, verifier)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		wantRevoked(t, srv, emulator.RevokedByUser)
	})
	for _, tt := range []struct {
		name      string
		wait      time.Duration
		wantError string
	}{
		{"BeforeCodeTTL", 4 * time.Second, ""},
		{"AfterCodeTTL", 6 * time.Second, "invalid_grant"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTokenServer(t, emulator.Config{CodeTTL: 5 * time.Second})
			code, verifier := codeFor(t, srv, testClient)
			advanceClock(t, srv, tt.wait)
			status, body, h := exchangeCode(t, srv, testClient, code, verifier)
			if tt.wantError == "" {
				tokensFrom(t, status, body)
				return
			}
			wantOAuthError(t, status, body, h, 400, tt.wantError)
		})
	}
	otherVerifier, _ := pkce()
	tests := []struct {
		name          string
		client        emulator.Client
		mutate        func(f url.Values)
		wantError     string
		wantViolation []string
	}{
		{"OtherClient", otherClient, func(url.Values) {}, "invalid_grant", nil},
		{"UnknownCode", testClient, func(f url.Values) { f.Set("code", "pac_unknown") }, "invalid_grant", nil},
		{"RedirectURIMismatch", testClient, func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:1/other") }, "invalid_grant", nil},
		{"WrongVerifier", testClient, func(f url.Values) { f.Set("code_verifier", otherVerifier) }, "invalid_grant", nil},
		{"MissingVerifier", testClient, func(f url.Values) { f.Del("code_verifier") }, "invalid_request", []string{emulator.RulePKCEMissing}},
		{"VerifierTooShort", testClient, func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 42)) }, "invalid_request", nil},
		{"VerifierTooLong", testClient, func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 129)) }, "invalid_request", nil},
		{"VerifierBadCharacters", testClient, func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 42)+"/") }, "invalid_request", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTokenServer(t, emulator.Config{})
			code, verifier := codeFor(t, srv, testClient)
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {testClient.RedirectURIs[0]}, "code_verifier": {verifier}}
			tt.mutate(form)
			status, body, h := tokenCall(t, srv, tt.client, form)
			wantOAuthError(t, status, body, h, 400, tt.wantError)
			if diff := cmp.Diff(tt.wantViolation, violations(srv)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToken_RefreshToken(t *testing.T) {
	t.Run("Rotation", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		old := connect(t, srv)
		status, body, h := refreshAs(t, srv, testClient, old.Refresh, nil)
		cur := tokensFrom(t, status, body)
		if cur.Access == old.Access || cur.Refresh == old.Refresh || cur.Access == cur.Refresh {
			t.Errorf("refresh returned %+v after %+v, want two new, distinct tokens", cur, old)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", h.Get("Cache-Control"))
		}
		if status, _, _ := apiGet(t, srv, "/v1/introspect", cur.Access); status != http.StatusOK {
			t.Errorf("API with the new access token: %d, want 200", status)
		}
		if status, _, _ := apiGet(t, srv, "/v1/introspect", old.Access); status != http.StatusUnauthorized {
			t.Errorf("API with the superseded access token: %d, want 401", status)
		}
		if diff := cmp.Diff([]string{emulator.RuleStaleAccessToken}, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
	})
	t.Run("ReuseRevokesAuthorisation", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		old := connect(t, srv)
		cur := mustRefresh(t, srv, old.Refresh)
		status, body, h := refreshAs(t, srv, testClient, old.Refresh, nil)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		wantRevoked(t, srv, emulator.RevokedRefreshTokenReuse)
		if status, _, _ := apiGet(t, srv, "/v1/introspect", cur.Access); status != http.StatusUnauthorized {
			t.Errorf("API with the revoked new access token: %d, want 401", status)
		}
		// A token revoked with its authorisation is not the client's fault: no stale_access_token.
		if diff := cmp.Diff([]string{emulator.RuleRefreshTokenReuse}, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
		status, body, h = refreshAs(t, srv, testClient, cur.Refresh, nil)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		want := []string{emulator.RuleRefreshTokenReuse, emulator.RuleRetryAfterInvalidGrant}
		if diff := cmp.Diff(want, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: time.Hour})
		tok := connect(t, srv)
		advanceClock(t, srv, time.Hour+time.Second)
		status, body, h := refreshAs(t, srv, testClient, tok.Refresh, nil)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		if diff := cmp.Diff([]string{emulator.RuleExpiredRefreshToken}, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
		wantRevoked(t, srv, emulator.RevokedExpiredRefreshToken)
	})
	t.Run("Jitter", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{RefreshTokenTTL: time.Hour, RefreshTokenJitter: time.Hour})
		early, late := connect(t, srv), connect(t, srv)
		var lifetimes []float64
		for _, rt := range []string{early.Refresh, late.Refresh} {
			_, in, _ := introspectAs(t, srv, testClient, rt)
			exp, _ := in["exp"].(float64)
			iat, _ := in["iat"].(float64)
			if life := exp - iat; life < 3600 || life > 7200 {
				t.Errorf("refresh token lifetime %vs, want within [1h, 2h]", life)
			}
			lifetimes = append(lifetimes, exp-iat)
		}
		t.Logf("refresh token lifetimes: %v s", lifetimes)
		if lifetimes[0] == 3600 && lifetimes[1] == 3600 {
			t.Errorf("refresh token lifetimes %v: no jitter applied", lifetimes)
		}
		advanceClock(t, srv, time.Hour-time.Second)
		mustRefresh(t, srv, early.Refresh)            // still within the TTL
		advanceClock(t, srv, time.Hour+2*time.Second) // past TTL + jitter
		status, body := refresh(t, srv, late.Refresh)
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("refresh past TTL+jitter: %d %v, want invalid_grant", status, body)
		}
		if diff := cmp.Diff([]string{emulator.RuleExpiredRefreshToken}, violations(srv)); diff != "" {
			t.Errorf("violations (-want +got):\n%s", diff)
		}
	})
	t.Run("NarrowerScope", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		tok := connect(t, srv)
		status, body, _ := refreshAs(t, srv, testClient, tok.Refresh, url.Values{"scope": {"users:read"}})
		narrow := tokensFrom(t, status, body)
		if body["scope"] != "users:read" {
			t.Errorf("scope = %v, want users:read", body["scope"])
		}
		if status, _, _ := apiGet(t, srv, "/v1/export-jobs", narrow.Access); status != http.StatusForbidden {
			t.Errorf("export-jobs with a users:read token: %d, want 403", status)
		}
		if status, _, _ := apiGet(t, srv, "/v2/employees", narrow.Access); status != http.StatusOK {
			t.Errorf("employees with a users:read token: %d, want 200", status)
		}
		// RFC 6749 §6: an omitted scope means the scope originally granted.
		_, body, _ = refreshAs(t, srv, testClient, narrow.Refresh, nil)
		if body["scope"] != "export-jobs:read users:read" {
			t.Errorf("scope after a refresh without scope = %v, want the granted scope", body["scope"])
		}
	})
	for name, scope := range map[string]string{"WiderScope": "users:read accounts:read", "EmptyScope": " "} {
		t.Run(name, func(t *testing.T) {
			srv := startTokenServer(t, emulator.Config{})
			tok := connect(t, srv)
			status, body, h := refreshAs(t, srv, testClient, tok.Refresh, url.Values{"scope": {scope}})
			wantOAuthError(t, status, body, h, 400, "invalid_scope")
			// Nothing rotated: both presented tokens still work.
			if status, _, _ := apiGet(t, srv, "/v1/introspect", tok.Access); status != http.StatusOK {
				t.Errorf("API after invalid_scope: %d, want 200", status)
			}
			mustRefresh(t, srv, tok.Refresh)
			if v := violations(srv); v != nil {
				t.Errorf("violations = %v, want none", v)
			}
		})
	}
	t.Run("UnknownToken", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		tok := connect(t, srv)
		for _, rt := range []string{"prt_unknown", tok.Access} { // an access token is no refresh token
			status, body, h := refreshAs(t, srv, testClient, rt, nil)
			wantOAuthError(t, status, body, h, 400, "invalid_grant")
		}
		if v := violations(srv); v != nil {
			t.Errorf("violations = %v, want none", v)
		}
		mustRefresh(t, srv, tok.Refresh)
	})
	t.Run("OtherClientsToken", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		tok := connect(t, srv)
		status, body, h := refreshAs(t, srv, otherClient, tok.Refresh, nil)
		wantOAuthError(t, status, body, h, 400, "invalid_grant")
		if a := lastAuthorisation(t, srv); a.State != emulator.AuthorisationActive || a.Refreshes != 0 {
			t.Errorf("authorisation %+v, want active and not refreshed", a)
		}
		mustRefresh(t, srv, tok.Refresh)
		if v := violations(srv); v != nil {
			t.Errorf("violations = %v, want none", v)
		}
	})
	t.Run("RevokedByUser", func(t *testing.T) {
		srv := startTokenServer(t, emulator.Config{})
		tok := connect(t, srv)
		if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, srv, emulator.RevokedByUser)
		for i, want := range [][]string{nil, {emulator.RuleRetryAfterInvalidGrant}} {
			status, body, h := refreshAs(t, srv, testClient, tok.Refresh, nil)
			wantOAuthError(t, status, body, h, 400, "invalid_grant")
			if diff := cmp.Diff(want, violations(srv)); diff != "" {
				t.Errorf("refresh %d: violations (-want +got):\n%s", i+1, diff)
			}
		}
		if err := srv.Revoke("auth_unknown"); err == nil {
			t.Error("Revoke of an unknown authorisation succeeded")
		}
	})
}

// wantRevoked checks that the newest authorisation is revoked for reason.
func wantRevoked(t *testing.T, srv *emulator.Server, reason string) {
	t.Helper()
	a := lastAuthorisation(t, srv)
	if a.State != emulator.AuthorisationRevoked || a.RevokedReason != reason || a.RevokedAt == nil {
		t.Errorf("authorisation %s/%s (at %v), want revoked/%s", a.State, a.RevokedReason, a.RevokedAt, reason)
	}
}

func TestToken_JWTTokens(t *testing.T) {
	srv := startTokenServer(t, emulator.Config{JWTTokens: true})
	code, verifier := codeFor(t, srv, testClient)
	status, body, _ := exchangeCode(t, srv, testClient, code, verifier)
	tok := tokensFrom(t, status, body)
	parts := strings.Split(tok.Access, ".")
	if len(parts) != 3 {
		t.Fatalf("access token has %d parts, want 3", len(parts))
	}
	for i, p := range parts {
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil || p == "" {
			t.Errorf("part %d is not base64url: %v", i, err)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Exp, Iat int64 }
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatalf("payload %s: %v", raw, err)
	}
	expiresIn, _ := body["expires_in"].(float64)
	if expiresIn <= 0 || claims.Iat == 0 {
		t.Fatalf("expires_in %v, payload iat %d; want both set", body["expires_in"], claims.Iat)
	}
	// The embedded exp lies: it is an hour later than the real expiry, iat + expires_in.
	if late := claims.Exp - (claims.Iat + int64(expiresIn)); late < 3600-5 || late > 3600+5 {
		t.Errorf("payload exp %d is %ds after iat %d + expires_in %v, want 3600s ± 5s", claims.Exp, late, claims.Iat, expiresIn)
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tok.Access); status != http.StatusOK {
		t.Errorf("API with a JWT-shaped token: %d, want 200", status)
	}
	mustRefresh(t, srv, tok.Refresh)
}
