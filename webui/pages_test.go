package webui_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

// TestServer_Pages walks every page and action with real connections
// whose real tokens (taken from the keeper, and opened from the store)
// must appear on no page.
func TestServer_Pages(t *testing.T) {
	var tested []tokenkeeper.ConnectionID
	e := newEnv(t, func(o *envOptions) {
		o.cfg = func(c *webui.Config) {
			c.Timeline = func(ctx context.Context, id tokenkeeper.ConnectionID) ([]webui.TimelineItem, error) {
				tested = append(tested, id)
				return []webui.TimelineItem{{Time: time.Now(), Kind: "refreshed", Text: "refreshed <b>by</b> the scheduler"}}, nil
			}
			c.RefreshesPerMinute = func(ctx context.Context, since time.Time) ([]webui.Bucket, error) {
				return []webui.Bucket{{Start: since.Add(10 * time.Minute), Refreshes: 7, Failures: 2}, {Start: since.Add(59 * time.Minute), Refreshes: 3}}, nil
			}
		}
	})
	for _, id := range []tokenkeeper.ConnectionID{"acme", "beta", "gamma"} {
		e.connect(id)
	}
	if err := e.k.Disconnect(context.Background(), "gamma", "test"); err != nil {
		t.Fatal(err)
	}
	b := e.loggedIn()

	t.Run("Overview", func(t *testing.T) {
		r := b.get("/ui/")
		wantStatus(t, r, http.StatusOK)
		for _, s := range []string{`<div class="n">3</div>`, `<div class="n">2</div>`, "10 refreshes and 2 failures in the last hour", `<rect class="failure"`, `role="img"`} {
			if !strings.Contains(r.body, s) {
				t.Errorf("the overview lacks %q", s)
			}
		}
	})
	t.Run("Connections", func(t *testing.T) {
		r := b.get("/ui/connections")
		wantStatus(t, r, http.StatusOK)
		for _, s := range []string{"acme", "beta", "gamma", `class="badge active"`, `class="badge disconnected"`, "urn:pleo:company:", "data-countdown"} {
			if !strings.Contains(r.body, s) {
				t.Errorf("the table lacks %q", s)
			}
		}
		r = b.get("/ui/connections?state=disconnected")
		if strings.Contains(r.body, ">acme<") || !strings.Contains(r.body, ">gamma<") {
			t.Errorf("state filter:\n%s", r.body)
		}
		r = b.get("/ui/connections?q=be")
		if strings.Contains(r.body, ">acme<") || !strings.Contains(r.body, ">beta<") {
			t.Errorf("prefix search:\n%s", r.body)
		}
		for _, bad := range []string{"?state=sleeping", "?q=a%20b", "?after=%2F"} {
			r := b.get("/ui/connections" + bad)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, `role="alert"`) {
				t.Errorf("%s: %d", bad, r.status)
			}
		}
	})
	t.Run("Connection", func(t *testing.T) {
		r := b.get("/ui/connections/acme")
		wantStatus(t, r, http.StatusOK)
		for _, s := range []string{"users:read", "Force refresh", "Create connect link", "Disconnect", "refreshed &lt;b&gt;by&lt;/b&gt;"} {
			if !strings.Contains(r.body, s) {
				t.Errorf("the page lacks %q", s)
			}
		}
		wantStatus(t, b.get("/ui/connections/nobody"), http.StatusNotFound)
		wantStatus(t, b.get("/ui/connections/a%20b"), http.StatusNotFound)
		wantStatus(t, b.get("/ui/nowhere"), http.StatusNotFound)
	})
	token := csrf(t, b.get("/ui/connections/acme").body)
	t.Run("ForceRefresh", func(t *testing.T) {
		before, _ := e.store.GetConnection(context.Background(), "acme")
		r := b.do("POST", "/ui/connections/acme/refresh", url.Values{"csrf": {token}})
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.header.Get("Location"); loc != "/base/ui/connections/acme?done=refreshed" {
			t.Errorf("Location %q", loc)
		}
		after, _ := e.store.GetConnection(context.Background(), "acme")
		if after.Generation <= before.Generation || !after.LastRefreshAt.After(before.LastRefreshAt) {
			t.Errorf("no refresh: generation %d -> %d", before.Generation, after.Generation)
		}
		e.harvest("acme")
		if r := b.get("/ui/connections/acme?done=refreshed"); !strings.Contains(r.body, "Refreshed:") {
			t.Error("no flash")
		}
		// A dead grant says what to do.
		r = b.do("POST", "/ui/connections/gamma/refresh", url.Values{"csrf": {token}})
		if r.status != http.StatusConflict || !strings.Contains(r.body, "Create a connect link") {
			t.Errorf("refresh of a disconnected connection: %d\n%s", r.status, r.body)
		}
	})
	t.Run("ConnectLink", func(t *testing.T) {
		r := b.do("POST", "/ui/connections/beta/connect-link", url.Values{"csrf": {token}})
		wantStatus(t, r, http.StatusOK)
		m := regexp.MustCompile(`value="(http://tk\.example/base/connect/[A-Za-z0-9_-]{43})"`).FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("no link in the page:\n%s", r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Error("the page with a link may be cached")
		}
	})
	t.Run("NewConnectLink", func(t *testing.T) {
		if !strings.Contains(b.get("/ui/connections").body, `action="/base/ui/connect-link"`) {
			t.Error("the connections page has no form for a new customer's link")
		}
		r := b.do("POST", "/ui/connect-link", url.Values{"csrf": {token}, "connection_id": {" newco-7 "}})
		wantStatus(t, r, http.StatusOK)
		if !regexp.MustCompile(`value="http://tk\.example/base/connect/[A-Za-z0-9_-]{43}"`).MatchString(r.body) || !strings.Contains(r.body, "newco-7") {
			t.Fatalf("no link for newco-7 in the page:\n%s", r.body)
		}
		for _, bad := range []string{"", "a b", "..", strings.Repeat("x", 129)} {
			r := b.do("POST", "/ui/connect-link", url.Values{"csrf": {token}, "connection_id": {bad}})
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Not a connection id") {
				t.Errorf("connection_id %q: %d", bad, r.status)
			}
		}
	})
	t.Run("Disconnect", func(t *testing.T) {
		r := b.do("POST", "/ui/connections/beta/disconnect", url.Values{"csrf": {token}})
		wantStatus(t, r, http.StatusBadRequest) // not confirmed
		r = b.do("POST", "/ui/connections/beta/disconnect", url.Values{"csrf": {token}, "confirm": {"yes"}})
		wantStatus(t, r, http.StatusSeeOther)
		rec, _ := e.store.GetConnection(context.Background(), "beta")
		if rec.State != tokenkeeper.StateDisconnected {
			t.Errorf("state %s", rec.State)
		}
	})
	t.Run("Audited", func(t *testing.T) {
		entries, err := e.store.ListAudit(context.Background(), tokenkeeper.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range entries {
			got = append(got, fmt.Sprintf("%s %s %s", a.Actor[:9], a.Action, a.ConnectionID))
		}
		want := "apikey:ak connection.delete beta|apikey:ak connect_session.create newco-7|apikey:ak connect_session.create beta|apikey:ak connection.refresh acme|apikey:ak ui.login "
		if strings.Join(got, "|") != want {
			t.Errorf("audit:\n%s\nwant\n%s", strings.Join(got, "|"), want)
		}
	})
	t.Run("Webhooks", func(t *testing.T) {
		r := b.get("/ui/webhooks")
		if r.status != http.StatusOK || !strings.Contains(r.body, "not configured") {
			t.Errorf("%d\n%s", r.status, r.body)
		}
		r = b.do("POST", "/ui/webhooks/test", url.Values{"csrf": {token}, "endpoint": {"ep1"}})
		wantStatus(t, r, http.StatusNotFound)
	})
	t.Run("Static", func(t *testing.T) {
		for _, p := range []string{"/ui/static/style.css", "/ui/static/app.js"} {
			r := b.get(p)
			if r.status != http.StatusOK || len(r.body) < 100 {
				t.Errorf("%s: %d", p, r.status)
			}
		}
		if r := b.get("/ui/static/"); r.status != http.StatusNotFound {
			t.Errorf("the static directory is listed: %d", r.status)
		}
	})
	if len(tested) == 0 {
		t.Error("Timeline was never called")
	}
	// Every page of the session, once more, after all the refreshes.
	for _, p := range append(pages, "/ui/connections/beta", "/ui/connections/gamma", "/ui/connections?state=active") {
		b.get(p)
	}
	if len(b.pages) < 15 {
		t.Errorf("only %d pages scanned", len(b.pages))
	}
}

// TestServer_Hooks: the webhook page and the chart draw what Config's
// functions return, and say so when they fail.
func TestServer_Hooks(t *testing.T) {
	var sent []string
	fail := false
	e := newEnv(t, func(o *envOptions) {
		o.cfg = func(c *webui.Config) {
			c.Endpoints = func(context.Context) ([]webui.Endpoint, error) {
				return []webui.Endpoint{{ID: "ep1", URL: "https://hooks.example/tk"}}, nil
			}
			c.Deliveries = func(_ context.Context, f webui.DeliveryFilter) ([]webui.Delivery, error) {
				if fail {
					return nil, errors.New("down")
				}
				return []webui.Delivery{{ID: "d1", EndpointID: "ep1", EndpointURL: "https://hooks.example/tk", EventType: "connection.connected", Time: time.Now(), Status: 500, Attempt: 2, Error: "HTTP 500"}}, nil
			}
			c.SendTestEvent = func(_ context.Context, ep string) error { sent = append(sent, ep); return nil }
			c.RefreshesPerMinute = func(context.Context, time.Time) ([]webui.Bucket, error) { return nil, errors.New("down") }
		}
	})
	b := e.loggedIn()
	r := b.get("/ui/webhooks")
	for _, s := range []string{"https://hooks.example/tk", "connection.connected", "HTTP 500", "Send test event"} {
		if !strings.Contains(r.body, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	r = b.do("POST", "/ui/webhooks/test", url.Values{"csrf": {csrf(t, r.body)}, "endpoint": {"ep1"}})
	wantStatus(t, r, http.StatusSeeOther)
	if len(sent) != 1 || sent[0] != "ep1" {
		t.Errorf("sent %v", sent)
	}
	fail = true
	if r := b.get("/ui/webhooks"); !strings.Contains(r.body, "could not be read") {
		t.Error("a failing delivery log is not reported")
	}
	if r := b.get("/ui/"); r.status != http.StatusOK || !strings.Contains(r.body, "could not be read") {
		t.Errorf("a failing chart: %d", r.status)
	}
}

// TestServer_Pagination: 2,500 connections, 50 a page, each page one
// keyset read: walking the Next links visits every connection once, in
// order, with filters kept.
func TestServer_Pagination(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const n = 2500
	for i := range n {
		st := tokenkeeper.StateActive
		if i%5 == 0 {
			st = tokenkeeper.StateReconnectRequired
		}
		rec := &tokenkeeper.Record{Connection: tokenkeeper.Connection{ID: tokenkeeper.ConnectionID(fmt.Sprintf("c-%05d", i)),
			Provider: "custom", State: st, Generation: 1, CreatedAt: now, UpdatedAt: now}}
		if i == 1 {
			rec.DegradedSince, rec.LastError = now, "the provider answered 503"
		}
		if err := e.store.CreateConnection(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	b := e.loggedIn()
	idRE := regexp.MustCompile(`href="/base/ui/connections/(c-\d{5})"`)
	nextRE := regexp.MustCompile(`href="/base(/ui/connections\?[^"]+)" rel="next"`)
	walk := func(start string) []string {
		var ids []string
		path := start
		for pages := 0; path != ""; pages++ {
			if pages > n {
				t.Fatal("the pages do not end")
			}
			r := b.get(path)
			wantStatus(t, r, http.StatusOK)
			for _, m := range idRE.FindAllStringSubmatch(r.body, -1) {
				ids = append(ids, m[1])
			}
			path = ""
			if m := nextRE.FindStringSubmatch(r.body); m != nil {
				path = strings.ReplaceAll(m[1], "&amp;", "&")
			}
		}
		return ids
	}
	if r := b.get("/ui/connections"); !strings.Contains(r.body, `<span class="badge degraded">degraded</span>`) ||
		!strings.Contains(r.body, "the provider answered 503") {
		t.Error("c-00001 is not shown degraded, with its error")
	}
	all := walk("/ui/connections")
	if len(all) != n || all[0] != "c-00000" || all[n-1] != "c-02499" {
		t.Fatalf("walked %d connections (%v ... %v)", len(all), all[:1], all[len(all)-1:])
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("out of order at %d: %s after %s", i, all[i], all[i-1])
		}
	}
	rr := walk("/ui/connections?state=reconnect_required")
	if len(rr) != n/5 {
		t.Errorf("reconnect_required: %d, want %d", len(rr), n/5)
	}
	pre := walk("/ui/connections?q=c-012")
	if len(pre) != 100 || pre[0] != "c-01200" {
		t.Errorf("prefix c-012: %d", len(pre))
	}
	if r := b.get("/ui/"); !strings.Contains(r.body, `<div class="n">2500</div>`) || !strings.Contains(r.body, "See all") {
		t.Error("the overview does not count 2500")
	}
}
