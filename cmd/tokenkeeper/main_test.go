package main

import (
	"bytes"
	"context"
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

	"github.com/tokenkeeper/tokenkeeper/internal/logtest"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer = logtest.Buffer

// runningEmulator is `tokenkeeper emulator` running in a goroutine.
type runningEmulator struct {
	auth, api, control string
	stdout, stderr     *syncBuffer
	cancel             context.CancelFunc
	done               chan int
}

// startEmulator runs Main with args and waits for the line with the URLs. The emulator is
// stopped when the test ends, if the test did not stop it.
func startEmulator(t *testing.T, args ...string) *runningEmulator {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e := &runningEmulator{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { e.done <- Main(ctx, args, e.stdout, e.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			t.Errorf("the emulator did not stop within 10s of cancellation")
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.stdout.String(), "\n") {
		select {
		case code := <-e.done:
			t.Fatalf("Main(%q) returned %d before listening; stderr:\n%s", args, code, e.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line on stdout within 5s; stderr:\n%s", e.stderr)
		}
	}
	line, _, _ := strings.Cut(e.stdout.String(), "\n")
	rest, ok := strings.CutPrefix(line, "pleo emulator listening: ")
	if !ok {
		t.Fatalf("first line = %q, want it to start with %q", line, "pleo emulator listening: ")
	}
	urls := map[string]string{}
	for _, field := range strings.Fields(rest) {
		k, v, _ := strings.Cut(field, "=")
		urls[k] = v
	}
	e.auth, e.api, e.control = urls["auth"], urls["api"], urls["control"]
	if e.auth == "" || e.api == "" || e.control != e.auth+"/_emulator" {
		t.Fatalf("first line = %q: want auth, api and control=<auth>/_emulator", line)
	}
	return e
}

// stop cancels Main and returns its exit code.
func (e *runningEmulator) stop(t *testing.T) int {
	t.Helper()
	e.cancel()
	select {
	case code := <-e.done:
		e.done <- code // for the cleanup
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("Main did not return within 10s of cancellation")
		return -1
	}
}

// run runs Main to completion and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// do sends req and decodes a JSON response body into a map.
func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			t.Fatalf("%s %s: status %d, body is not JSON: %q", req.Method, req.URL, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, body
}

// tokenRequest posts form to the token endpoint with HTTP Basic credentials.
func tokenRequest(t *testing.T, authURL string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, authURL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("id", "secret")
	return do(t, req)
}

func TestMain_Emulator(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t, "emulator", "--listen", "127.0.0.1:0", "--auto-approve",
		"--client", "id:secret:http://127.0.0.1:1/cb", "--access-token-ttl", "2m")

	// Authorization code + PKCE (RFC 7636), auto-approved.
	body := connectEmulator(t, emu)
	access, _ := body["access_token"].(string)
	refresh1, _ := body["refresh_token"].(string)
	if got := body["expires_in"]; got != 120.0 {
		t.Errorf("expires_in = %v, want 120 (--access-token-ttl 2m)", got)
	}

	req, _ := http.NewRequest(http.MethodGet, emu.api+"/v1/introspect", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	if status, body := do(t, req); status != http.StatusOK || body["clientId"] != "id" {
		t.Fatalf("GET /v1/introspect: status %d, body %v; want 200 for client id", status, body)
	}

	req, _ = http.NewRequest(http.MethodPost, emu.control+"/clock", strings.NewReader(`{"advance":"1m"}`))
	if status, body := do(t, req); status != http.StatusOK || body["offset"] != "1m0s" {
		t.Fatalf("POST /clock: status %d, body %v; want 200 with offset 1m0s", status, body)
	}

	rep, err := (&emulator.Remote{URL: emu.auth}).Report(context.Background())
	if err != nil || len(rep.Authorisations) != 1 {
		t.Fatalf("Remote.Report = %d authorisations, %v; want 1", len(rep.Authorisations), err)
	}
	authID := rep.Authorisations[0].ID

	t.Run("ReportClean", func(t *testing.T) {
		code, stdout, stderr := run(t, "emulator", "report", "--url", emu.auth)
		if code != exitOK {
			t.Fatalf("report exit = %d, want 0; stderr:\n%s", code, stderr)
		}
		for _, want := range []string{"authorisations 1", "violations 0", authID, "authorization_code", "COUNTERS", "AUTHORISATIONS", "VIOLATIONS"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("report does not contain %q:\n%s", want, stdout)
			}
		}
	})

	// Rotate once, then present the rotated-out refresh token again: reuse.
	status, body := tokenRequest(t, emu.auth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}})
	if status != http.StatusOK {
		t.Fatalf("first refresh: status %d, body %v", status, body)
	}
	status, body = tokenRequest(t, emu.auth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("reused refresh: status %d, body %v; want 400 invalid_grant", status, body)
	}

	t.Run("ReportViolations", func(t *testing.T) {
		code, stdout, stderr := run(t, "emulator", "report", "--url", emu.auth)
		if code != exitViolations {
			t.Fatalf("report exit = %d, want 3; stderr:\n%s", code, stderr)
		}
		for _, want := range []string{emulator.RuleRefreshTokenReuse, authID, emulator.RevokedRefreshTokenReuse} {
			if !strings.Contains(stdout, want) {
				t.Errorf("report does not contain %q:\n%s", want, stdout)
			}
		}
		if !strings.Contains(stderr, "refresh_token_reuse 1") {
			t.Errorf("stderr = %q, want the violation counts", stderr)
		}
	})

	t.Run("ReportJSON", func(t *testing.T) {
		code, stdout, stderr := run(t, "emulator", "report", "--url", emu.control, "--json")
		if code != exitViolations {
			t.Fatalf("report --json exit = %d, want 3; stderr:\n%s", code, stderr)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
			t.Fatalf("report --json is not JSON: %v\n%s", err, stdout)
		}
		var violations []emulator.Violation
		if err := json.Unmarshal(raw["violations"], &violations); err != nil {
			t.Fatalf("violations field: %v\n%s", err, stdout)
		}
		var rules []string
		for _, v := range violations {
			rules = append(rules, v.Rule)
		}
		if diff := cmp.Diff([]string{emulator.RuleRefreshTokenReuse}, rules); diff != "" {
			t.Errorf("violation rules (-want +got):\n%s", diff)
		}
	})

	if code := emu.stop(t); code != exitOK {
		t.Errorf("emulator exit = %d, want 0; stderr:\n%s", code, emu.stderr)
	}
	if got := strings.Count(emu.stdout.String(), "\n"); got != 1 {
		t.Errorf("stdout has %d lines, want exactly 1 (no demo client with --client):\n%s", got, emu.stdout)
	}
}

func TestMain_EmulatorDemoClient(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t, "emulator", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--quiet")
	if emu.api == emu.auth {
		t.Errorf("api = auth = %s, want a listener of its own with --api-listen", emu.api)
	}
	if code := emu.stop(t); code != exitOK {
		t.Fatalf("emulator exit = %d, want 0; stderr:\n%s", code, emu.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(emu.stdout.String(), "\n"), "\n")
	d := emulator.DemoClient()
	if len(lines) != 2 || !strings.Contains(lines[1], "id="+d.ID) || !strings.Contains(lines[1], "secret="+d.Secret) ||
		!strings.Contains(lines[1], d.RedirectURIs[0]) {
		t.Errorf("stdout = %q, want a second line naming the demo client", lines)
	}
	if s := emu.stderr.String(); s != "" {
		t.Errorf("stderr with --quiet = %q, want nothing", s)
	}
}

func TestMain_Usage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a substring; "" checks nothing
		wantStderr string // a substring; "" checks nothing
	}{
		{"NoCommand", nil, exitUsage, "", "Usage:"},
		{"UnknownCommand", []string{"serve-me"}, exitUsage, "", `unknown command "serve-me"`},
		{"Help", []string{"help"}, exitOK, "Exit codes:", ""},
		{"DashHelp", []string{"--help"}, exitOK, "emulator report", ""},
		{"HelpEmulator", []string{"help", "emulator"}, exitOK, "TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL", ""},
		{"EmulatorDashH", []string{"emulator", "-h"}, exitOK, "--refresh-token-jitter", ""},
		{"ReportDashH", []string{"emulator", "report", "--help"}, exitOK, "TOKENKEEPER_EMULATOR_URL", ""},
		{"BadDuration", []string{"emulator", "--access-token-ttl", "banana"}, exitUsage, "", "--access-token-ttl"},
		{"ShortDuration", []string{"emulator", "--code-ttl", "10ms"}, exitUsage, "", "--code-ttl"},
		{"NegativeJitter", []string{"emulator", "--refresh-token-jitter", "-1s"}, exitUsage, "", "--refresh-token-jitter"},
		// Past the emulator's 100-year bound. --listen port 0: a broken check must not bind 9090.
		{"LongRefreshTTL", []string{"emulator", "--listen", "127.0.0.1:0", "--refresh-token-ttl", "900000h"}, exitUsage, "", "--refresh-token-ttl: 900000h is longer than 100 years"},
		{"LongAccessTTL", []string{"emulator", "--listen", "127.0.0.1:0", "--access-token-ttl", "876001h"}, exitUsage, "", "--access-token-ttl"},
		{"LongCodeTTL", []string{"emulator", "--listen", "127.0.0.1:0", "--code-ttl", "900000h"}, exitUsage, "", "--code-ttl"},
		{"LongJitter", []string{"emulator", "--listen", "127.0.0.1:0", "--refresh-token-ttl", "875000h", "--refresh-token-jitter", "1001h"}, exitUsage, "", "--refresh-token-jitter"},
		{"OverflowingJitter", []string{"emulator", "--listen", "127.0.0.1:0", "--refresh-token-ttl", "2562000h", "--refresh-token-jitter", "1000h"}, exitUsage, "", "--refresh-token-ttl"},
		{"BadClient", []string{"emulator", "--client", "nocolons"}, exitUsage, "", "--client"},
		{"BadClientRedirect", []string{"emulator", "--client", "id:s3cr3t:relative"}, exitUsage, "", "--client"},
		{"BadLogFormat", []string{"emulator", "--log-format", "xml"}, exitUsage, "", "--log-format"},
		{"BadSeed", []string{"emulator", "--seed", "-3"}, exitUsage, "", "--seed"},
		{"BadListen", []string{"emulator", "--listen", "9090"}, exitUsage, "", "--listen"},
		{"UnknownFlag", []string{"emulator", "--nope"}, exitUsage, "", "unknown flag --nope"},
		{"StrayArgument", []string{"emulator", "now"}, exitUsage, "", `unexpected argument "now"`},
		{"ReportBadURL", []string{"emulator", "report", "--url", "127.0.0.1:9090"}, exitUsage, "", "--url"},
		{"ReportUnreachable", []string{"emulator", "report", "--url", "http://127.0.0.1:1"}, exitError, "", "http://127.0.0.1:1"},
		{"Version", []string{"version"}, exitOK, "go1.", ""},
		{"VersionExtra", []string{"version", "now"}, exitUsage, "", "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("Main(%q) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout does not contain %q:\n%s", tt.wantStdout, stdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr does not contain %q:\n%s", tt.wantStderr, stderr)
			}
			if strings.Contains(stderr, "s3cr3t") {
				t.Errorf("stderr repeats a client secret:\n%s", stderr)
			}
		})
	}
}

// The environment tests are not parallel: t.Setenv changes the whole process.

func TestMain_EnvBadValue(t *testing.T) {
	t.Setenv("TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL", "bogus")
	code, _, stderr := run(t, "emulator", "--listen", "127.0.0.1:0")
	if code != exitUsage || !strings.Contains(stderr, "TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL") {
		t.Errorf("exit %d, stderr %q; want 2 and a message naming TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL", code, stderr)
	}
}

func TestMain_EnvSetsAndFlagWins(t *testing.T) {
	t.Setenv("TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL", "3m")
	t.Setenv("TOKENKEEPER_EMULATOR_LOG_FORMAT", "json")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"Env", nil, `"access_token_ttl":"3m"`},
		{"FlagWins", []string{"--access-token-ttl", "4m"}, `"access_token_ttl":"4m"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu := startEmulator(t, append([]string{"emulator", "--listen", "127.0.0.1:0"}, tt.args...)...)
			emu.stop(t)
			if s := emu.stderr.String(); !strings.Contains(s, tt.want) {
				t.Errorf("stderr does not contain %s:\n%s", tt.want, s)
			}
		})
	}
}

func TestMain_EnvReportURL(t *testing.T) {
	t.Setenv("TOKENKEEPER_EMULATOR_URL", "http://127.0.0.1:1")
	code, _, stderr := run(t, "emulator", "report")
	if code != exitError || !strings.Contains(stderr, "http://127.0.0.1:1") {
		t.Errorf("exit %d, stderr %q; want 1 and a message naming http://127.0.0.1:1", code, stderr)
	}
}

// connectEmulator runs the authorization-code flow with PKCE for the client
// id:secret:http://127.0.0.1:1/cb against an auto-approving emulator, checks that it
// succeeded, and returns the token response.
func connectEmulator(t *testing.T, emu *runningEmulator) map[string]any {
	t.Helper()
	vb := make([]byte, 32)
	_, _ = rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {"id"}, "redirect_uri": {"http://127.0.0.1:1/cb"},
		"state": {"st"}, "scope": {"users:read"}, "code_challenge_method": {"S256"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
	}
	resp, err := noRedirects.Get(emu.auth + "/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if resp.StatusCode != http.StatusSeeOther || code == "" || loc.Query().Get("state") != "st" {
		t.Fatalf("authorize: status %d, Location %q; want 303 with a code and state=st", resp.StatusCode, loc)
	}
	status, body := tokenRequest(t, emu.auth, url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1:1/cb"}, "code_verifier": {verifier},
	})
	if status != http.StatusOK || body["access_token"] == nil || body["refresh_token"] == nil {
		t.Fatalf("code exchange: status %d, body %v", status, body)
	}
	return body
}

// TestMain_EmulatorReportLostResponse checks that `emulator report` does not fail on a
// violation that followed a lost response, which a correct client cannot avoid, and does
// fail on the next one, which the client is to blame for.
func TestMain_EmulatorReportLostResponse(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t, "emulator", "--listen", "127.0.0.1:0", "--auto-approve", "--quiet",
		"--client", "id:secret:http://127.0.0.1:1/cb")
	refresh1, _ := connectEmulator(t, emu)["refresh_token"].(string)

	req, _ := http.NewRequest(http.MethodPut, emu.control+"/faults", strings.NewReader(`{"token":{"script":["drop_after_commit"]}}`))
	if status, body := do(t, req); status != http.StatusOK {
		t.Fatalf("PUT /faults: status %d, body %v", status, body)
	}
	// The refresh commits, then the connection drops: the client never sees the new tokens.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh1}}
	req, _ = http.NewRequest(http.MethodPost, emu.auth+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("id", "secret")
	oneShot := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if resp, err := oneShot.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("refresh with drop_after_commit: status %d, want a dropped connection", resp.StatusCode)
	}
	// So it presents the old refresh token again: reuse, after a lost response.
	status, body := tokenRequest(t, emu.auth, form)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("reused refresh: status %d, body %v; want 400 invalid_grant", status, body)
	}

	code, stdout, stderr := run(t, "emulator", "report", "--url", emu.auth)
	if code != exitOK {
		t.Errorf("report after a lost-response violation: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"followed a lost response", emulator.RuleRefreshTokenReuse} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report does not contain %q:\n%s", want, stdout)
		}
	}

	// Told invalid_grant, the client tries again: that one is its own fault.
	status, body = tokenRequest(t, emu.auth, form)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after invalid_grant: status %d, body %v; want 400 invalid_grant", status, body)
	}
	code, stdout, stderr = run(t, "emulator", "report", "--url", emu.auth)
	if code != exitViolations {
		t.Errorf("report after a blamed violation: exit %d, want 3; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, emulator.RuleRetryAfterInvalidGrant) {
		t.Errorf("report does not contain %q:\n%s", emulator.RuleRetryAfterInvalidGrant, stdout)
	}
}
