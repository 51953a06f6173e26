package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

// TestDashboard_Browser follows an operator and a customer through `tokenkeeper dev` in
// Chromium: the customer opens a connect link (the landing page, Pleo's consent, the
// success page) and opens it again (the failure page); the operator signs in to /ui,
// filters and searches the table, opens the connection, creates a connect link and
// forces a refresh. Along the way it checks labels, keyboard focus and the countdown
// script, and with TOKENKEEPER_UPDATE_SCREENSHOTS=1 it saves the screenshots in
// docs/screenshots.
func TestDashboard_Browser(t *testing.T) {
	browsertest.Require(t)
	d := startDev(t, t.TempDir())
	api := func(method, path string, body, out any) int {
		t.Helper()
		return call(t, method, d.base+path, d.key, body, out)
	}
	link := func(id string) string {
		t.Helper()
		var s struct{ URL string }
		if code := api("POST", "/v1/connect-sessions", map[string]string{"connection_id": id}, &s); code != http.StatusCreated {
			t.Fatalf("connect session: %d", code)
		}
		return s.URL
	}
	p := newBrowserPage(t, d)
	ctx, step, text, eval, shot := p.ctx, p.step, p.text, p.eval, p.shot
	// labelled checks that every control of the page has an accessible name.
	labelled := func(page string) {
		t.Helper()
		nodes, err := browsertest.AccessibilityTree(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			switch n.Role {
			case "textbox", "combobox", "checkbox", "button", "link", "searchbox":
				if strings.TrimSpace(n.Name) == "" {
					t.Errorf("%s: a %s without an accessible name", page, n.Role)
				}
			}
		}
	}
	// focusVisible presses Tab and reports the focused element's text and whether it
	// shows a focus outline.
	focusVisible := func() (string, bool) {
		t.Helper()
		step("press Tab", chromedp.KeyEvent("\t"))
		el := eval(`(document.activeElement.innerText || document.activeElement.value || document.activeElement.id || "").trim()`)
		return el, eval(`getComputedStyle(document.activeElement).outlineStyle`) != "none"
	}

	// The customer: landing page, consent, success.
	acme := link("acme")
	step("open the link", chromedp.Navigate(acme), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := text("h1"); !strings.Contains(h, "Tokenkeeper Dev") {
		t.Errorf("landing page h1 %q", h)
	}
	if lang := eval(`document.documentElement.lang`); lang != "en" {
		t.Errorf("lang %q", lang)
	}
	if el, ok := focusVisible(); el != "Continue to Pleo" || !ok {
		t.Errorf("the first Tab focuses %q (outline %v); want the Continue button, outlined", el, ok)
	}
	labelled("the landing page")
	shot("connect-landing.png")
	step("continue", chromedp.Click(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`)), chromedp.WaitVisible(chromedp.ID("approve")))
	step("approve", chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.CSS(".icon.ok")))
	if h := text("h1"); !strings.Contains(h, "connected") {
		t.Errorf("success page h1 %q", h)
	}
	shot("connect-success.png")
	// The same link again: spent.
	step("open the link again", chromedp.Navigate(acme), chromedp.Click(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`)),
		chromedp.WaitVisible(chromedp.CSS(".icon.bad")))
	if h, next := text("h1"), text("main"); !strings.Contains(h, "already been used") || !strings.Contains(next, "What to do next") {
		t.Errorf("failure page: %q\n%s", h, next)
	}
	shot("connect-failure.png")
	// Two more connections, one disconnected, for the table.
	for _, id := range []string{"globex", "initech"} {
		step("connect "+id, chromedp.Navigate(link(id)), chromedp.Click(chromedp.Search(`//button[normalize-space()="Continue to Pleo"]`)),
			chromedp.WaitVisible(chromedp.ID("approve")), chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.CSS(".icon.ok")))
	}
	if code := api("DELETE", "/v1/connections/initech", nil, nil); code != http.StatusOK {
		t.Fatalf("disconnect initech: %d", code)
	}

	// The operator: the login page, then the overview.
	step("open the dashboard", chromedp.Navigate(d.base+"/ui/connections"), chromedp.WaitVisible(chromedp.ID("key")))
	labelled("the login page")
	if el := eval(`document.activeElement.id`); el != "key" {
		t.Errorf("the login page focuses %q; want the key field", el)
	}
	step("sign in", chromedp.SendKeys(chromedp.ID("key"), d.key), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("table")))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != d.base+"/ui/connections" {
		t.Errorf("after signing in the browser is at %s; want the page it asked for", loc)
	}
	table := text("table")
	for _, s := range []string{"acme", "globex", "initech", "active", "disconnected", "company "} {
		if !strings.Contains(table, s) {
			t.Errorf("the table lacks %q:\n%s", s, table)
		}
	}
	labelled("the connections page")
	shot("dashboard-connections.png")
	if el, ok := focusVisible(); el != "Skip to content" || !ok {
		t.Errorf("the first Tab focuses %q (outline %v); want the skip link, outlined", el, ok)
	}
	// The countdown script runs (CSP allows our own script) and keeps the server's format.
	first := text("time[data-countdown]")
	time.Sleep(1100 * time.Millisecond)
	if again := text("time[data-countdown]"); again == first || !regexp.MustCompile(`^in (\d+m )?\d+s$`).MatchString(again) {
		t.Errorf("the countdown went from %q to %q", first, again)
	}

	step("filter active", chromedp.SetValue(chromedp.ID("state"), "active"), chromedp.Submit(chromedp.ID("q")),
		chromedp.WaitVisible(chromedp.Search(`//a[normalize-space()="Clear"]`)))
	if table := text("table"); strings.Contains(table, "initech") || !strings.Contains(table, "globex") {
		t.Errorf("filtered by active:\n%s", table)
	}
	step("search", chromedp.SendKeys(chromedp.ID("q"), "ac"), chromedp.Submit(chromedp.ID("q")),
		chromedp.WaitNotPresent(chromedp.Search(`//a[normalize-space()="globex"]`)))
	step("open acme", chromedp.Click(chromedp.Search(`//a[normalize-space()="acme"]`)), chromedp.WaitVisible(chromedp.ID("details-h")))
	labelled("the connection page")

	step("create a connect link", chromedp.Click(chromedp.Search(`//button[normalize-space()="Create connect link"]`)), chromedp.WaitVisible(chromedp.ID("link")))
	v, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("link")))
	if err != nil || !regexp.MustCompile(`^`+regexp.QuoteMeta(d.base)+`/connect/[A-Za-z0-9_-]{43}$`).MatchString(v) {
		t.Errorf("the connect link field holds %q (%v)", v, err)
	}
	step("force a refresh", chromedp.Click(chromedp.Search(`//button[normalize-space()="Force refresh"]`)), chromedp.WaitVisible(chromedp.CSS(`[role="status"]`)))
	if s := text(`[role="status"]`); !strings.HasPrefix(s, "Refreshed") {
		t.Errorf("after a forced refresh the page says %q", s)
	}
	if tl := text("ol.timeline"); !strings.Contains(tl, "forced refresh by apikey:") || !strings.Contains(tl, "connect link created") {
		t.Errorf("the timeline lacks the actions:\n%s", tl)
	}
	shot("dashboard-connection.png")

	step("overview", chromedp.Navigate(d.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS(".cards")))
	if s := text(".chart"); !regexp.MustCompile(`\d+ refresh(es)? and 0 failures`).MatchString(s) {
		t.Errorf("the chart says %q", s)
	}
	labelled("the overview")
	shot("dashboard-overview.png")

	// Nothing the browser saw holds a token.
	var tok tokenResponse
	if code := api("POST", "/v1/connections/acme/token", nil, &tok); code != http.StatusOK {
		t.Fatal(code)
	}
	for _, p := range []string{"/ui/", "/ui/connections", "/ui/connections/acme"} {
		step("revisit "+p, chromedp.Navigate(d.base+p), chromedp.WaitVisible(chromedp.CSS("main")))
		if html := eval(`document.documentElement.outerHTML`); strings.Contains(html, tok.AccessToken) || strings.Contains(html, d.key) {
			t.Errorf("%s shows the access token or the API key", p)
		}
	}
}
