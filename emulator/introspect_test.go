package emulator_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

var inactiveIntrospection = map[string]any{"active": false}

func TestIntrospect_Active(t *testing.T) {
	tests := []struct {
		name     string
		pick     func(tokens) string
		wantType string
		wantLife time.Duration
	}{
		{"AccessToken", func(tok tokens) string { return tok.Access }, "access_token", 10 * time.Minute},
		{"RefreshToken", func(tok tokens) string { return tok.Refresh }, "refresh_token", 48 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true,
				AccessTokenTTL: 10 * time.Minute, RefreshTokenTTL: 48 * time.Hour})
			tok := connect(t, srv)
			status, body, h := introspectAs(t, srv, testClient, tt.pick(tok))
			if status != http.StatusOK {
				t.Fatalf("introspect: %d %v", status, body)
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", h.Get("Cache-Control"))
			}
			want := map[string]any{
				"active": true, "sub": nordlysURN, "urn:pleo:params:oauth:subject_urn": nordlysURN,
				"client_id": testClient.ID, "aud": testClient.ID, "token_type": tt.wantType,
				"scope": "export-jobs:read users:read",
			}
			for k, v := range want {
				if body[k] != v {
					t.Errorf("%s = %v, want %v", k, body[k], v)
				}
			}
			for _, k := range []string{"iss", "jti"} {
				if s, _ := body[k].(string); s == "" {
					t.Errorf("%s = %v, want a non-empty string", k, body[k])
				}
			}
			exp, _ := body["exp"].(float64)
			iat, _ := body["iat"].(float64)
			if now := float64(srv.Now().Unix()); iat < now-5 || iat > now {
				t.Errorf("iat = %v, want about now (%v)", iat, now)
			}
			if life := time.Duration(exp-iat) * time.Second; life != tt.wantLife {
				t.Errorf("exp - iat = %s, want %s", life, tt.wantLife)
			}
		})
	}
}

func TestIntrospect_DistinctJTI(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tok := connect(t, srv)
	_, a, _ := introspectAs(t, srv, testClient, tok.Access)
	_, r, _ := introspectAs(t, srv, testClient, tok.Refresh)
	if a["jti"] == r["jti"] {
		t.Errorf("access and refresh token share jti %v", a["jti"])
	}
}

func TestIntrospect_Inactive(t *testing.T) {
	other := emulator.Client{ID: "other-client", Secret: "other-secret", RedirectURIs: testClient.RedirectURIs}
	tests := []struct {
		name string
		// setup returns the token to introspect and the client that asks.
		setup func(t *testing.T, srv *emulator.Server) (string, emulator.Client)
	}{
		{"OtherClient", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			return connect(t, srv).Access, other
		}},
		{"OtherClientRefreshToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			return connect(t, srv).Refresh, other
		}},
		{"RotatedAccessToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			mustRefresh(t, srv, tok.Refresh)
			return tok.Access, testClient
		}},
		{"RotatedRefreshToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			mustRefresh(t, srv, tok.Refresh)
			return tok.Refresh, testClient
		}},
		{"ExpiredAccessToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			advanceClock(t, srv, emulator.DefaultAccessTokenTTL+time.Second)
			return tok.Access, testClient
		}},
		{"ExpiredRefreshToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			advanceClock(t, srv, emulator.DefaultRefreshTokenTTL+time.Second)
			return tok.Refresh, testClient
		}},
		{"RevokedAccessToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
				t.Fatal(err)
			}
			return tok.Access, testClient
		}},
		{"RevokedRefreshToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			tok := connect(t, srv)
			if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
				t.Fatal(err)
			}
			return tok.Refresh, testClient
		}},
		{"UnknownToken", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			return "pat_unknown", testClient
		}},
		{"AuthorizationCode", func(t *testing.T, srv *emulator.Server) (string, emulator.Client) {
			code, _ := codeFor(t, srv, testClient)
			return code, testClient
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, emulator.Config{AutoApprove: true, Clients: []emulator.Client{testClient, other}})
			token, asker := tt.setup(t, srv)
			status, body, _ := introspectAs(t, srv, asker, token)
			if status != http.StatusOK {
				t.Errorf("status = %d, want 200", status)
			}
			if diff := cmp.Diff(inactiveIntrospection, body); diff != "" {
				t.Errorf("introspection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntrospect_Errors(t *testing.T) {
	wrong := testClient
	wrong.Secret = "nope"
	tests := []struct {
		name       string
		method     string
		auth       string
		body       string
		wantStatus int
		wantError  string
	}{
		{"NoAuth", http.MethodPost, "", "token=pat_x", 401, "invalid_client"},
		{"NoAuthBodyCredentials", http.MethodPost, "", "token=pat_x&client_id=test-client&client_secret=x", 401, "invalid_client"},
		{"WrongSecret", http.MethodPost, basicAuth(wrong), "token=pat_x", 401, "invalid_client"},
		{"MissingToken", http.MethodPost, basicAuth(testClient), "token_type_hint=access_token", 400, "invalid_request"},
		{"EmptyToken", http.MethodPost, basicAuth(testClient), "token=", 400, "invalid_request"},
		{"RepeatedToken", http.MethodPost, basicAuth(testClient), "token=a&token=b", 400, "invalid_request"},
		{"GET", http.MethodGet, basicAuth(testClient), "", 405, "invalid_request"},
	}
	srv := startServer(t, emulator.Config{AutoApprove: true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, h := sendRaw(t, tt.method, srv.URL+"/oauth/token/introspect", formHeader(tt.auth), tt.body)
			wantOAuthError(t, status, body, h, tt.wantStatus, tt.wantError)
			if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge", h.Get("WWW-Authenticate"))
			}
		})
	}
}
