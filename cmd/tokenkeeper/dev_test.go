package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
)

// runningDev is `tokenkeeper dev` started by Main.
type runningDev struct {
	stdout, stderr *logtest.Buffer
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
	base, key      string
}

func startDev(t *testing.T, dataDir string) *runningDev {
	t.Helper()
	d := &runningDev{stdout: &logtest.Buffer{}, stderr: &logtest.Buffer{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	args := []string{"dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--emulator-listen", "127.0.0.1:0"}
	go func() { d.code = Main(ctx, args, d.stdout, d.stderr); close(d.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			t.Errorf("dev did not stop within 15s")
		}
	})
	banner := regexp.MustCompile(`Bearer (tk_[a-z0-9_]+)" (http://127\.0\.0\.1:\d+)/v1/connections/demo/token`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := banner.FindStringSubmatch(d.stdout.String()); m != nil {
			d.key, d.base = m[1], m[2]
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("dev exited %d before printing its banner:\n%s", d.code, d.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 20s; stdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
		}
	}
}

// TestDev_Browser follows the README's quickstart in a real browser: open the page, click
// "Connect the demo company", approve on the emulator's consent page, come back connected,
// then use the printed curl lines' API key for a token and a proxied call. A second run
// on the same data directory keeps the connection and the key.
func TestDev_Browser(t *testing.T) {
	browsertest.Require(t)
	dataDir := t.TempDir()
	d := startDev(t, dataDir)

	ctx := browsertest.New(t)
	steps := []struct {
		what string
		do   chromedp.Action[chromedp.Void]
	}{
		{"open the dev page", chromedp.Navigate(d.base + "/")},
		{"click Connect", chromedp.Click(chromedp.Search(`//button[normalize-space()="Connect the demo company"]`))},
		{"continue on the landing page", chromedp.Click(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`))},
		{"see the consent page", chromedp.WaitVisible(chromedp.ID("approve"))},
		{"approve", chromedp.Click(chromedp.ID("approve"))},
		{"come back", chromedp.WaitVisible(chromedp.CSS(`[role="status"]`))},
	}
	for _, s := range steps {
		if err := chromedp.Do(ctx, s.do); err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", s.what, err, d.stderr)
		}
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[role="status"]`)))
	if err != nil || !strings.Contains(status, "Connected") {
		t.Errorf("the page says %q (%v) after approving; want Connected", status, err)
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "demo") || !strings.Contains(table, "active") || !strings.Contains(table, "urn:pleo:company:") {
		t.Errorf("the connections table lacks the active demo connection and its subject:\n%s", table)
	}
	if browsertest.UpdateScreenshots() {
		if err := browsertest.SaveScreenshot(ctx, "../../docs/screenshots/dev-connected.png"); err != nil {
			t.Error(err)
		}
	}

	call := func(method, path string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, d.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+d.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var tok tokenResponse
	if code := call("POST", "/v1/connections/demo/token", &tok); code != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("the banner's token curl: %d %+v", code, tok)
	}
	if d := time.Until(tok.ExpiresAt); d <= 0 || d > 2*time.Minute {
		t.Errorf("expires_at is %s away; dev's access tokens live 2 minutes", d)
	}
	if code := call("GET", "/v1/connections/demo/proxy/v2/employees", nil); code != http.StatusOK {
		t.Errorf("the banner's proxy curl: %d", code)
	}
	if strings.Contains(d.stderr.String()+d.stdout.String(), tok.AccessToken) {
		t.Errorf("dev's output holds the access token")
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "admin-api-key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin-api-key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// Stop, and run again on the same directory: same key, same connection.
	d.cancel()
	<-d.done
	if d.code != 0 {
		t.Fatalf("dev exited %d on cancellation:\n%s", d.code, d.stderr)
	}
	again := startDev(t, dataDir)
	if again.key != d.key {
		t.Errorf("a second run printed another API key")
	}
	var conn struct{ State string }
	d.base = again.base
	if code := call("GET", "/v1/connections/demo", &conn); code != http.StatusOK || conn.State != "active" {
		t.Errorf("after a restart: %d, state %q; want the active demo connection", code, conn.State)
	}
}
