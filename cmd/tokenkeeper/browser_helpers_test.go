package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

// call sends an HTTP request to url with an optional bearer key and JSON body, decodes a
// JSON answer into out (if not nil), and returns the status.
func call(t *testing.T, method, url, bearer string, body, out any) int {
	t.Helper()
	var b bytes.Buffer
	if body != nil {
		json.NewEncoder(&b).Encode(body)
	}
	req, _ := http.NewRequest(method, url, &b)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
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

// browserPage drives one Chromium tab through a running dev, failing the test on any
// error with dev's log.
type browserPage struct {
	t   *testing.T
	ctx context.Context
	d   *runningDev
}

func newBrowserPage(t *testing.T, d *runningDev) *browserPage {
	return &browserPage{t: t, ctx: browsertest.New(t), d: d}
}

// step runs actions.
func (p *browserPage) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\nstderr:\n%s", what, err, p.d.stderr)
	}
}

// text returns the text of the first element matching the CSS selector sel.
func (p *browserPage) text(sel string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// eval evaluates js in the page.
func (p *browserPage) eval(js string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return s
}

// shot saves a screenshot of the page as docs/screenshots/name, with
// TOKENKEEPER_UPDATE_SCREENSHOTS=1.
func (p *browserPage) shot(name string) {
	p.t.Helper()
	if browsertest.UpdateScreenshots() {
		if err := browsertest.SaveScreenshot(p.ctx, "../../docs/screenshots/"+name); err != nil {
			p.t.Error(err)
		}
	}
}
