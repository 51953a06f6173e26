package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// e2e is a `tokenkeeper serve` started by Main against an in-process emulator.
type e2e struct {
	t        *testing.T
	emu      *emulator.Server
	addr     string
	base     string // the service's URL
	key      string // an admin API key
	stdout   *logtest.Buffer
	stderr   *logtest.Buffer
	cancel   context.CancelFunc
	done     chan struct{} // closed when Main returned, with its exit code in code
	code     int
	store    string
	keyFile  string
	returnTo string
}

// e2eOptions adjust one run of serve.
type e2eOptions struct {
	// args are more serve flags.
	args []string
	// tokenURL, if set, replaces the emulator's token endpoint.
	tokenURL string
	// beforeKeyWatch is testSeams.beforeKeyWatch.
	beforeKeyWatch func()
	// ctx, if set, adjusts serve's context (more test seams).
	ctx func(context.Context) context.Context
}

// freeAddr returns a free loopback address, so that the redirect URI registered at the
// emulator is known before the service starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startE2E makes a keyset and an admin API key with the CLI, then runs Main serve.
func startE2E(t *testing.T, extra ...string) *e2e {
	t.Helper()
	e := newE2E(t)
	e.serve(e2eOptions{args: extra})
	return e
}

// newE2E starts the emulator and makes a keyset and an admin API key with the CLI; serve
// starts it.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	public := "http://" + addr
	emu, err := emulator.NewServer(emulator.Config{
		AutoApprove: true,
		Clients: []emulator.Client{{ID: "e2e-client", Secret: "e2e-secret-0123456789",
			RedirectURIs: []string{public + "/oauth/callback"}, Name: "E2E"}},
		AccessTokenTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	e := &e2e{t: t, emu: emu, addr: addr, base: public,
		store: "sqlite:" + filepath.Join(dir, "tk.db"), keyFile: filepath.Join(dir, "keyset.json"),
		returnTo: "https://app.example/settings/pleo?tab=integrations"}

	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("tokenkeeper %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	run("keys", "generate", "--out", e.keyFile)
	var created struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(run("apikeys", "create", "--store", e.store, "--name", "e2e", "--scopes", "admin", "--json")), &created); err != nil || created.Key == "" {
		t.Fatalf("apikeys create --json: %v (key %q)", err, created.Key)
	}
	e.key = created.Key

	t.Setenv("TOKENKEEPER_CLIENT_ID", "e2e-client")
	t.Setenv("TOKENKEEPER_CLIENT_SECRET", "e2e-secret-0123456789")
	return e
}

// serve runs Main serve on e's store and key file, and returns once it listens. A test
// may run it again once the previous run stopped: each run has its own output and exit
// code.
func (e *e2e) serve(opts e2eOptions) {
	t := e.t
	t.Helper()
	e.stdout, e.stderr, e.done = &logtest.Buffer{}, &logtest.Buffer{}, make(chan struct{})
	// The service reads the emulator's clock, so that the test can travel in time without
	// the service using a token the emulator considers expired.
	ctx, cancel := context.WithCancel(withSeams(context.Background(),
		testSeams{now: e.emu.Now, keyPoll: 20 * time.Millisecond, storePoll: 50 * time.Millisecond, beforeKeyWatch: opts.beforeKeyWatch}))
	e.cancel = cancel
	if opts.ctx != nil {
		ctx = opts.ctx(ctx)
	}
	tokenURL := e.emu.URL + "/oauth/token"
	if opts.tokenURL != "" {
		tokenURL = opts.tokenURL
	}
	args := append([]string{"serve", "--listen", e.addr, "--public-url", e.base, "--store", e.store, "--key-file", e.keyFile,
		"--provider", "custom", "--auth-url", e.emu.URL + "/oauth/authorize", "--token-url", tokenURL,
		"--api-url", e.emu.APIURL, "--allowed-return-url", "https://app.example/settings", "--log-level", "debug"}, opts.args...)
	done, stdout, stderr := e.done, e.stdout, e.stderr
	go func() { e.code = Main(ctx, args, stdout, stderr); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop within 15s of cancellation")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "\n") {
		select {
		case <-done:
			t.Fatalf("serve exited %d before listening:\n%s", e.code, stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed nothing within 10s:\n%s", stderr)
		}
	}
}

// stop cancels serve (SIGTERM) and returns its exit code.
func (e *e2e) stop() int {
	e.t.Helper()
	e.cancel()
	select {
	case <-e.done:
		return e.code
	case <-time.After(15 * time.Second):
		e.t.Fatalf("serve did not stop within 15s of cancellation:\n%s", e.stderr)
		return -1
	}
}

// call sends an API request with the admin key and decodes a JSON answer into out.
func (e *e2e) call(method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// connect makes a connect session and follows it like a browser (the emulator approves at
// once), stopping at the return URL, whose query it returns.
func (e *e2e) connect(id string) url.Values {
	e.t.Helper()
	var sess struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if code := e.call("POST", "/v1/connect-sessions", map[string]string{"connection_id": id, "return_to": e.returnTo}, &sess); code != http.StatusCreated {
		e.t.Fatalf("POST /v1/connect-sessions: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	var landed *url.URL
	browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == "app.example" {
			landed = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := browser.PostForm(sess.URL, nil)
	if err != nil {
		e.t.Fatalf("follow the connect link: %v", err)
	}
	resp.Body.Close()
	if landed == nil {
		e.t.Fatalf("the connect flow ended at %s with %d, not at the return URL", resp.Request.URL, resp.StatusCode)
	}
	if landed.Path != "/settings/pleo" || landed.Query().Get("tab") != "integrations" {
		e.t.Errorf("returned to %s; want the return_to with its query kept", landed)
	}
	first := landed
	// The link is single-use: opening it again starts nothing.
	landed = nil
	resp, err = browser.PostForm(sess.URL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if landed != nil || resp.StatusCode != http.StatusNotFound {
		e.t.Errorf("a spent connect link answered %d (landed at %v); want 404", resp.StatusCode, landed)
	}
	return first.Query()
}

type tokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	ExpiresIn   int64     `json:"expires_in"`
}

func TestServe_EndToEnd(t *testing.T) {
	e := startE2E(t)
	if q := e.connect("acme"); q.Get("status") != "connected" || q.Get("connection_id") != "acme" {
		t.Fatalf("connect returned %v; want status=connected and connection_id=acme", q)
	}
	var issued []string // every access token the test saw, for the leak scan
	token := func() tokenResponse {
		t.Helper()
		var tr tokenResponse
		if code := e.call("POST", "/v1/connections/acme/token", nil, &tr); code != http.StatusOK {
			t.Fatalf("POST token: %d", code)
		}
		if tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 || !tr.ExpiresAt.After(time.Now()) {
			t.Fatalf("token response %+v is incomplete", tr)
		}
		issued = append(issued, tr.AccessToken)
		return tr
	}
	employees := func() int {
		t.Helper()
		var body map[string]any
		return e.call("GET", "/v1/connections/acme/proxy/v2/employees", nil, &body)
	}
	first := token()
	if code := employees(); code != http.StatusOK {
		t.Fatalf("GET employees through the proxy: %d", code)
	}

	// Ride through several expiries: the clock jumps past each token's lifetime, and the
	// next call through the proxy refreshes first (once), then calls with the new token.
	prev := first.AccessToken
	for i := 1; i <= 3; i++ {
		if _, err := e.emu.Advance(2 * time.Hour); err != nil {
			t.Fatal(err)
		}
		if code := employees(); code != http.StatusOK {
			t.Fatalf("expiry %d: GET employees through the proxy: %d\n%s", i, code, e.stderr)
		}
		now := token()
		if now.AccessToken == prev {
			t.Fatalf("expiry %d: the token endpoint still serves the token the provider refused", i)
		}
		prev = now.AccessToken
		if got := latestAuthorisation(t, e.emu).Refreshes; got != i {
			t.Errorf("expiry %d: the emulator counted %d refreshes; want exactly %d", i, got, i)
		}
	}

	// The user revokes the app at Pleo: the next refresh gets invalid_grant.
	if err := e.emu.Revoke(latestAuthorisation(t, e.emu).ID); err != nil {
		t.Fatal(err)
	}
	e.emu.Advance(2 * time.Hour)
	if code := employees(); code != http.StatusConflict {
		t.Errorf("GET employees after the revocation: %d; want 409 reconnect_required", code)
	}
	var errBody struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code := e.call("POST", "/v1/connections/acme/token", nil, &errBody); code != http.StatusConflict || errBody.Error.Code != "reconnect_required" {
		t.Fatalf("POST token after invalid_grant: %d %+v; want 409 reconnect_required", code, errBody)
	}
	var conn struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	if e.call("GET", "/v1/connections/acme", nil, &conn); conn.State != "reconnect_required" {
		t.Fatalf("connection state %q; want reconnect_required", conn.State)
	}

	// The user reconnects; everything works again.
	if q := e.connect("acme"); q.Get("status") != "connected" {
		t.Fatalf("reconnect returned %v", q)
	}
	token()
	if code := employees(); code != http.StatusOK {
		t.Fatalf("GET employees after reconnecting: %d", code)
	}
	if e.call("GET", "/v1/connections/acme", nil, &conn); conn.State != "active" {
		t.Fatalf("connection state %q after reconnecting; want active", conn.State)
	}

	rep := e.emu.Report()
	if len(rep.Violations) != 0 {
		t.Errorf("the emulator recorded violations: %+v", rep.Violations)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := e.call("GET", path, nil, nil); code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tokenkeeper_refreshes_total{outcome="ok"} 3`, `tokenkeeper_refreshes_total{outcome="invalid_grant"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGTERM (the context) drains and exits 0.
	e.cancel()
	select {
	case <-e.done:
		if e.code != 0 {
			t.Errorf("serve exited %d after cancellation; want 0\n%s", e.code, e.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	logs := e.stderr.String() + e.stdout.String()
	if !strings.Contains(logs, "stopped cleanly") {
		t.Errorf("the log does not say it stopped cleanly:\n%s", logs)
	}
	for _, tok := range append(issued, e.key, "e2e-secret-0123456789") {
		if strings.Contains(logs, tok) {
			t.Errorf("the log holds a token or secret (%.8s...)", tok)
		}
	}
}

// latestAuthorisation returns the emulator's newest authorisation: the test connects one
// company at a time.
func latestAuthorisation(t *testing.T, emu *emulator.Server) emulator.AuthorisationReport {
	t.Helper()
	auths := emu.Report().Authorisations
	if len(auths) == 0 {
		t.Fatal("the emulator has no authorisation")
	}
	return auths[len(auths)-1]
}

// TestServe_KeyRotationOnline rotates the sealing key with `keys rotate --remove-old`
// while serve runs on the same store and key file: serve reloads the file, keeps serving
// and refreshing, and afterwards every token in the store is sealed under the new key
// alone, which serve can open.
func TestServe_KeyRotationOnline(t *testing.T) {
	e := startE2E(t)
	e.connect("acme")
	e.connect("beta")
	before, err := seal.Load(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := []string{"keys", "rotate", "--key-file", e.keyFile, "--store", e.store, "--remove-old", "--settle", "200ms"}
	if code := Main(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("keys rotate: exit %d\n%s%s", code, out.String(), errb.String())
	}
	after, err := seal.Load(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if after.PrimaryKeyID() == before.PrimaryKeyID() || len(after.KeyIDs()) != 1 {
		t.Fatalf("after rotation the file holds keys %v (primary %s); want one new key", after.KeyIDs(), after.PrimaryKeyID())
	}
	// Wait for serve to load the final file, then make it refresh (seal) and read.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.stderr.String(), "primary="+after.PrimaryKeyID()) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not reload the key file:\n%s", e.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.emu.Advance(2 * time.Hour)
	for _, id := range []string{"acme", "beta"} {
		var body map[string]any
		if code := e.call("GET", "/v1/connections/"+id+"/proxy/v2/employees", nil, &body); code != http.StatusOK {
			t.Fatalf("%s: GET employees after the rotation: %d\n%s", id, code, e.stderr)
		}
	}
	if v := e.emu.Report().Violations; len(v) != 0 {
		t.Errorf("violations: %+v", v)
	}
	e.cancel()
	<-e.done
	// Every sealed value in the store is under the new key.
	st, err := sqlite.Open(context.Background(), strings.TrimPrefix(e.store, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListConnections(context.Background(), tokenkeeper.ConnectionFilter{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("list: %d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Tokens.AccessToken.KeyID != after.PrimaryKeyID() || r.Tokens.RefreshToken.KeyID != after.PrimaryKeyID() {
			t.Errorf("%s is sealed under %s/%s; want %s", r.ID, r.Tokens.AccessToken.KeyID, r.Tokens.RefreshToken.KeyID, after.PrimaryKeyID())
		}
	}
}

// TestServe_MetricsListen: with --metrics-listen, /metrics is served there alone, and the
// public listener has none.
func TestServe_MetricsListen(t *testing.T) {
	maddr := freeAddr(t)
	e := startE2E(t, "--metrics-listen", maddr)
	e.connect("acme")
	if code := e.call("GET", "/metrics", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the public listener: %d; want 404", code)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "tokenkeeper_connections{state=\"active\"}") {
		t.Errorf("GET /metrics on --metrics-listen: %d\n%.300s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + maddr + "/v1/connections")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/connections on the metrics listener: %d; want 404", resp.StatusCode)
	}
}
