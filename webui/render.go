package webui

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
	"time"
)

// pageNames are the dashboard's pages; each is layout.html plus <name>.html.
var pageNames = []string{"login", "overview", "connections", "connection", "newlink", "webhooks", "message"}

type pageSet struct{ t *template.Template }

func loadPages() map[string]*pageSet {
	m := make(map[string]*pageSet, len(pageNames))
	for _, n := range pageNames {
		m[n] = &pageSet{t: pageTemplate("layout", "layout.html", n+".html")}
	}
	return m
}

// view is what every dashboard template reads; Data is the page's own.
type view struct {
	Title    string
	Nav      string // the current section: overview, connections, webhooks
	Base     string // the public path of /ui
	CSRF     string
	KeyName  string
	KeyID    string
	LoggedIn bool
	Now      time.Time
	Data     any
}

// render writes page name with data. sess may be nil (the login page).
func (s *Server) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name, title, nav string, data any) {
	v := view{Title: title, Nav: nav, Base: s.base, Now: s.cfg.Now(), Data: data}
	if sess != nil {
		v.LoggedIn, v.CSRF, v.KeyName, v.KeyID = true, sess.csrfToken(), sess.keyName, string(sess.keyID)
	}
	var buf bytes.Buffer
	if err := s.pages[name].t.ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.ErrorContext(r.Context(), "webui: render", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message is the data of the message page.
type message struct {
	Text string
	Back string // a path under /ui to go back to; "" for none
}

// fail writes a page that says what went wrong and what to do.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, status int, title, text string) {
	s.render(w, r, sess, status, "message", title, "", message{Text: text, Back: "/"})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, sess *session) {
	s.fail(w, r, sess, http.StatusNotFound, "Page not found", "There is no dashboard page at this address.")
}
