package httpapi

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

// page is what a browser page of the connect flow says.
type page struct {
	Title   string
	Message string
	// Reason is the connect.Reason of a failure, for support; "" if none.
	Reason string
	// Button, if set, is the label of a form that POSTs to this page's URL.
	Button string
}

// pageTemplate is deliberately plain: one heading, one sentence, and the
// reason code in small print. html/template escapes the provider's text.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · tokenkeeper</title>
<style>
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;background:#f6f6f4;margin:0}
main{max-width:32rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{font-size:1.35rem;margin:0 0 .75rem}
p{margin:0 0 .5rem}
.reason{color:#6e6e73;font-size:.85rem}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Button}}<form method="post"><button type="submit">{{.Button}}</button></form>{{end}}
{{if .Reason}}<p class="reason">Reason: {{.Reason}}</p>{{end}}
</main>
</body>
</html>
`))

// page writes p as an HTML page with status. The page's headers (a strict
// CSP, no framing, no caching) are those ServeHTTP sets on every response.
func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, p page) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		s.log.ErrorContext(r.Context(), "http: render page", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
