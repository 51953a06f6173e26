package emulator_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/logtest"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer = logtest.Buffer

// TestLogging checks that the log tells a user what happened (requests, violations) and
// never what must stay secret (tokens, codes, client secrets, query strings).
func TestLogging(t *testing.T) {
	var buf syncBuffer
	srv := startServer(t, emulator.Config{
		AutoApprove: true,
		Logger:      slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	first := connect(t, srv)
	second := mustRefresh(t, srv, first.Refresh)
	apiGet(t, srv, "/v1/introspect", first.Access) // stale: superseded
	refresh(t, srv, first.Refresh)                 // reuse: revokes
	if err := srv.SetFaults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultDropBefore}}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader("grant_type=refresh_token&refresh_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(testClient))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("drop_before: got a response, want a dropped connection")
	}

	out := buf.String()
	for _, want := range []string{
		`msg=request method=POST path=/oauth/token status=200`,
		`path=/oauth/token outcome="connection dropped"`,
		`level=WARN msg="rule violated" rule=stale_access_token`,
		`level=WARN msg="rule violated" rule=refresh_token_reuse`,
		`msg="authorisation revoked"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for name, secret := range map[string]string{
		"first access token": first.Access, "first refresh token": first.Refresh,
		"second access token": second.Access, "second refresh token": second.Refresh,
		"client secret": testClient.Secret, "state": "st-123",
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

func TestControl_Health(t *testing.T) {
	srv := startServer(t, emulator.Config{})
	var body map[string]string
	if status, _ := controlSend(t, srv, http.MethodGet, "/health", "", &body); status != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("GET /_emulator/health = %d %v, want 200 ok", status, body)
	}
}
