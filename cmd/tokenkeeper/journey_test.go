package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

// TestJourney_Browser is the people side of tokenkeeper end to end, in Chromium, against
// the real Main (`tokenkeeper dev`: the service and the emulator), with a webhook receiver
// that checks every signature the Standard Webhooks way, independently of our signer:
//
//  1. An operator signs in to the dashboard and creates a connect link for a new customer.
//  2. The customer opens it, continues from the landing page, approves on the emulator's
//     consent page, and lands on the success page.
//  3. The dashboard shows the connection active, with a live countdown; the receiver got
//     connection.connected.
//  4. The emulator revokes the authorisation (the customer uninstalled the app in Pleo),
//     and the next refresh, forced from the dashboard, fails.
//  5. The dashboard shows "reconnect required", and the receiver got
//     connection.reconnect_required with a valid signature.
//  6. The operator sends a new link, the customer reconnects through it, and everything is
//     active again.
//
// Each step saves a screenshot with TOKENKEEPER_UPDATE_SCREENSHOTS=1 (docs/screenshots/
// journey-*.png). No page and no webhook holds a token or the API key.
func TestJourney_Browser(t *testing.T) {
	browsertest.Require(t)
	d := startDev(t, t.TempDir())
	m := regexp.MustCompile(`Pleo emulator: (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(d.stdout.String())
	if m == nil {
		t.Fatalf("dev printed no emulator address:\n%s", d.stdout)
	}
	emu := m[1]
	// The integrator's webhook receiver, registered over the API; the secret is shown once.
	hooks := newHookReceiver(t, "")
	var ep struct{ ID, URL, Secret string }
	if code := call(t, "POST", d.base+"/v1/webhook-endpoints", d.key, map[string]string{"url": hooks.srv.URL + "/tokenkeeper"}, &ep); code != http.StatusCreated {
		t.Fatalf("POST /v1/webhook-endpoints: %d", code)
	}
	if !strings.HasPrefix(ep.Secret, "whsec_") || ep.ID == "" || ep.URL != hooks.srv.URL+"/tokenkeeper" {
		t.Fatalf("the new endpoint: id %q, url %q, a whsec_ secret: %v", ep.ID, ep.URL, strings.HasPrefix(ep.Secret, "whsec_"))
	}
	hooks.mu.Lock()
	hooks.secret = ep.Secret
	hooks.mu.Unlock()

	p := newBrowserPage(t, d)
	ctx, step, text := p.ctx, p.step, p.text
	var pages []string // every page's HTML, scanned for secrets at the end
	shot := func(name string) {
		t.Helper()
		html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, html)
		p.shot(name)
	}
	const id = "acme-books"
	badge := func() string { return text("h1 .badge") }

	// 1. The operator signs in and makes a link for a new customer.
	step("sign in", chromedp.Navigate(d.base+"/ui/connections"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), d.key), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.ID("new-id")))
	step("create a connect link", chromedp.SendKeys(chromedp.ID("new-id"), id),
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Create connect link"]`)), chromedp.WaitVisible(chromedp.ID("link")))
	link, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("link")))
	if err != nil || !regexp.MustCompile(`^`+regexp.QuoteMeta(d.base)+`/connect/[A-Za-z0-9_-]{43}$`).MatchString(link) {
		t.Fatalf("the new link field holds %q (%v)", link, err)
	}
	shot("journey-1-operator-link.png")

	// 2. The customer connects.
	// connectThrough follows link as the customer; prefix names its screenshots ("": none).
	connectThrough := func(link, prefix string) {
		t.Helper()
		shot := func(name string) {
			if prefix != "" {
				shot(prefix + name)
			}
		}
		step("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`)))
		if h := text("h1"); !strings.Contains(h, "Connect") {
			t.Errorf("landing page h1 %q", h)
		}
		shot("-landing.png")
		step("continue to Pleo", chromedp.Click(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`)), chromedp.WaitVisible(chromedp.ID("approve")))
		shot("-consent.png")
		step("approve", chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.CSS(".icon.ok")))
		if h := text("h1"); !strings.Contains(h, "connected") {
			t.Errorf("success page h1 %q", h)
		}
		shot("-success.png")
	}
	connectThrough(link, "journey-2")

	// 3. Active on the dashboard, with a countdown; the receiver heard of it.
	step("open the connection", chromedp.Navigate(d.base+"/ui/connections/"+id), chromedp.WaitVisible(chromedp.ID("details-h")))
	if b := badge(); b != "active" {
		t.Errorf("badge %q after connecting, want active", b)
	}
	first := text("time[data-countdown]")
	time.Sleep(1100 * time.Millisecond)
	if again := text("time[data-countdown]"); again == first || !regexp.MustCompile(`^in (\d+m )?\d+s$`).MatchString(again) {
		t.Errorf("the countdown went from %q to %q", first, again)
	}
	shot("journey-3-active.png")
	connected := hooks.waitFor("connection.connected")
	if c := connected[len(connected)-1]; c.Data.ConnectionID != id || !strings.HasPrefix(c.Data.Subject, "urn:pleo:company:") {
		t.Errorf("connected webhook: %s", c.Body)
	}

	// 4. The customer uninstalls the app in Pleo; the next refresh fails.
	var auths struct {
		Authorisations []struct{ ID, Subject, State string }
	}
	if code := call(t, "GET", emu+"/_emulator/authorisations", "", nil, &auths); code != http.StatusOK || len(auths.Authorisations) != 1 {
		t.Fatalf("emulator authorisations: %d, %+v", code, auths)
	}
	if code := call(t, "POST", emu+"/_emulator/authorisations/"+auths.Authorisations[0].ID+"/revoke", "", nil, nil); code/100 != 2 {
		t.Fatalf("revoke at the emulator: %d", code)
	}
	step("force a refresh", chromedp.Click(chromedp.Search(`//button[normalize-space()="Force refresh"]`)), chromedp.WaitVisible(chromedp.CSS(`[role="alert"]`)))
	shot("journey-4-refresh-failed.png")

	// 5. Reconnect required, on the dashboard and in a signed webhook.
	step("reload the connection", chromedp.Navigate(d.base+"/ui/connections/"+id), chromedp.WaitVisible(chromedp.ID("details-h")))
	if b := badge(); b != "reconnect required" {
		t.Errorf("badge %q after the revocation, want reconnect required", b)
	}
	shot("journey-5-reconnect-required.png")
	dead := hooks.waitFor("connection.reconnect_required")
	if c := dead[len(dead)-1]; c.Data.ConnectionID != id || c.Data.Reason == "" {
		t.Errorf("reconnect_required webhook: %s", c.Body)
	}

	// 6. A new link from the connection page; the customer reconnects; active again.
	step("create a new link", chromedp.Click(chromedp.Search(`//button[normalize-space()="Create connect link"]`)), chromedp.WaitVisible(chromedp.ID("link")))
	again, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("link")))
	if err != nil || again == link {
		t.Fatalf("the new link %q (%v)", again, err)
	}
	connectThrough(again, "")
	step("open the connection again", chromedp.Navigate(d.base+"/ui/connections/"+id), chromedp.WaitVisible(chromedp.ID("details-h")))
	if b := badge(); b != "active" {
		t.Errorf("badge %q after reconnecting, want active", b)
	}
	if tl := text("ol.timeline"); !strings.Contains(tl, "the grant is dead") || strings.Count(tl, "connected") < 2 {
		t.Errorf("the timeline lacks the story:\n%s", tl)
	}
	shot("journey-6-active-again.png")
	var reconnected int
	deadline := time.Now().Add(15 * time.Second)
	for reconnected < 2 && time.Now().Before(deadline) {
		reconnected = 0
		for _, m := range hooks.messages() {
			if m.Type == "connection.connected" && m.Data.ConnectionID == id {
				reconnected++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if reconnected != 2 {
		t.Errorf("%d connection.connected webhooks for %s, want 2 (the connect and the reconnect)", reconnected, id)
	}

	// Nothing any page or webhook showed holds a token or the API key.
	var tok tokenResponse
	if code := call(t, "POST", d.base+"/v1/connections/"+id+"/token", d.key, nil, &tok); code != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token after the reconnect: %d", code)
	}
	for i, html := range pages {
		if strings.Contains(html, tok.AccessToken) || strings.Contains(html, d.key) {
			t.Errorf("page %d shows the access token or the API key", i)
		}
	}
	for _, m := range hooks.messages() {
		if strings.Contains(m.Body, tok.AccessToken) || strings.Contains(m.Body, "token\":") {
			t.Errorf("a webhook holds a token: %s", m.Body)
		}
	}
	t.Logf("%d pages checked, %d webhooks verified: %s", len(pages), len(hooks.messages()), fmt.Sprint(hookTypes(hooks.messages())))
}

func hookTypes(ms []hookMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type)
	}
	return out
}
