package main

import (
	"html/template"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// devConnectionID is the connection the dev page connects.
const devConnectionID = "demo"

// devPages serves dev mode's own pages: "/" (the connections and a connect button) and
// "POST /dev/connect" (makes a connect link for "demo" and follows it). Both exist only in
// dev mode, which listens on loopback: in serve, only an admin API key can make a link.
func devPages(ptr *atomic.Pointer[service]) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		svc := ptr.Load()
		if svc == nil {
			return false // still starting
		}
		switch r.URL.Path {
		case "/":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return false
			}
			devHome(w, r, svc)
			return true
		case "/dev/connect":
			if r.Method != http.MethodPost {
				return false
			}
			link, err := svc.flow.NewLink(r.Context(), connect.LinkRequest{ConnectionID: devConnectionID, ReturnURL: "/"})
			if err != nil {
				svc.log.Error("dev: make a connect link", "err", err)
				http.Error(w, "could not make a connect link: "+tokenkeeper.ErrorMessage(err), http.StatusInternalServerError)
				return true
			}
			http.Redirect(w, r, svc.s.public.String()+"/connect/"+link.Token.Reveal(), http.StatusSeeOther)
			return true
		}
		return false
	}
}

type devRow struct {
	ID, State, Subject, LastError string
	Expires, LastRefresh, Next    string
}

func devHome(w http.ResponseWriter, r *http.Request, svc *service) {
	recs, err := svc.store.ListConnections(r.Context(), tokenkeeper.ConnectionFilter{Limit: 50})
	if err != nil {
		svc.log.Error("dev: list connections", "err", err)
		http.Error(w, "could not list connections", http.StatusInternalServerError)
		return
	}
	now := time.Now()
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		d := t.Sub(now).Round(time.Second)
		if d == 0 {
			return "just now"
		}
		if d < 0 {
			return (-d).String() + " ago"
		}
		return "in " + d.String()
	}
	rows := make([]devRow, 0, len(recs))
	for _, rec := range recs {
		rows = append(rows, devRow{
			ID: string(rec.ID), State: string(rec.State), Subject: rec.Subject, LastError: rec.LastError,
			Expires: rel(rec.Tokens.Expiry), LastRefresh: rel(rec.LastRefreshAt), Next: rel(rec.NextRefreshAt),
		})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	if err := devTemplate.Execute(w, struct {
		Rows     []devRow
		Query    string
		Status   string
		Code     string
		Redirect string
	}{rows, r.URL.RawQuery, r.URL.Query().Get("status"), r.URL.Query().Get("code"), "5"}); err != nil {
		svc.log.Debug("dev: render the page", "err", err)
	}
}

var devTemplate = template.Must(template.New("dev").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Redirect}}">
<title>tokenkeeper dev</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd}
button{font:inherit;padding:.5rem 1rem;border-radius:.4rem;border:1px solid #1a56db;background:#1a56db;color:#fff;cursor:pointer}
.ok{color:#0a6b2e}.bad{color:#a4161a}
</style></head><body>
<h1>tokenkeeper dev</h1>
{{if eq .Status "connected"}}<p class="ok" role="status">Connected. The tokens are sealed in the store; watch them rotate below.</p>{{end}}
{{if eq .Status "error"}}<p class="bad" role="alert">The connection failed: {{.Code}}.</p>{{end}}
<form method="post" action="/dev/connect"><button type="submit">Connect the demo company</button></form>
<h2>Connections</h2>
{{if .Rows}}<table><thead><tr><th>ID</th><th>State</th><th>Subject</th><th>Access token expires</th><th>Last refresh</th><th>Next refresh</th><th>Last error</th></tr></thead><tbody>
{{range .Rows}}<tr><td>{{.ID}}</td><td>{{.State}}</td><td>{{.Subject}}</td><td>{{.Expires}}</td><td>{{.LastRefresh}}</td><td>{{.Next}}</td><td>{{.LastError}}</td></tr>
{{end}}</tbody></table>{{else}}<p>None yet.</p>{{end}}
<p>This page reloads every 5 seconds. It exists only in dev mode.</p>
</body></html>
`))
