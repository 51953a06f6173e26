package webui

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// loginData is the login page's.
type loginData struct {
	Next  string
	CSRF  string // the login form's double-submit token
	Error string
}

// loginPage serves GET /ui/login. The form's CSRF token is a random value
// also set in a SameSite=Strict cookie (double submit): there is no
// session yet to keep it in.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if sess, err := s.current(r); err == nil && sess != nil {
		s.redirect(w, r, "/")
		return
	}
	s.showLogin(w, r, http.StatusOK, safeNext(r.URL.Query().Get("next")), "")
}

func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, status int, next, errText string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, s.cookie(r, loginCookie, token, s.base+"/login", 3600))
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, nil, status, "login", "Sign in", "", loginData{Next: next, CSRF: token, Error: errText})
}

// login serves POST /ui/login: an admin API key starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	c, err := r.Cookie(loginCookie)
	if err != nil || !s.checkForm(w, r, c.Value) {
		s.fail(w, r, nil, http.StatusForbidden, "This sign-in form has expired",
			"Open the sign-in page again, then enter your key.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	key := tokenkeeper.NewSecret(strings.TrimSpace(r.PostForm.Get("key")))
	refused := func(status int, text string) { s.showLogin(w, r, status, next, text) }
	id, err := tokenkeeper.ParseAPIKey(key)
	if err != nil {
		refused(http.StatusUnauthorized, "That is not a tokenkeeper API key. Keys start with tk_.")
		return
	}
	rec, err := s.cfg.APIKeys.GetAPIKey(r.Context(), id)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		refused(http.StatusUnauthorized, "This API key is not valid.")
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "webui: read an API key at login", "error", err)
		refused(http.StatusServiceUnavailable, "The key store is unavailable. Wait a moment, then try again.")
		return
	case !rec.Verify(key) || rec.Revoked():
		refused(http.StatusUnauthorized, "This API key is not valid.")
		return
	case !rec.Allows(tokenkeeper.ScopeAdmin):
		refused(http.StatusForbidden, "This API key does not have the admin scope, which the dashboard needs.")
		return
	}
	sess := s.newSession(rec)
	value, err := s.seal(sess)
	if err != nil {
		s.log.ErrorContext(r.Context(), "webui: seal a session", "error", err)
		refused(http.StatusInternalServerError, "Signing in failed on our side. Try again.")
		return
	}
	http.SetCookie(w, s.cookie(r, sessionCookie, value, s.base, int(s.cfg.SessionTTL.Seconds())))
	http.SetCookie(w, s.cookie(r, loginCookie, "", s.base+"/login", -1))
	s.audit(r, sess, "ui.login", "", "")
	s.redirect(w, r, next)
}

// logout serves POST /ui/logout.
func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	http.SetCookie(w, s.cookie(r, sessionCookie, "", s.base, -1))
	s.redirect(w, r, "/login")
}

// safeNext returns next if it is a path under /ui to go back to after
// logging in ("/connections?state=active"), re-encoded, else "/": never
// another host, never a Location a browser could read otherwise.
func safeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, "/login") {
		return "/"
	}
	out := u.EscapedPath()
	if q := u.Query().Encode(); q != "" {
		out += "?" + q
	}
	if strings.HasPrefix(out, "//") {
		return "/"
	}
	return out
}
