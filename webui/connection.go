package webui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

type linkView struct {
	URL       string
	ExpiresAt time.Time
}

type connectionData struct {
	Conn         *tokenkeeper.Connection
	Badge        string
	Expiry       time.Time
	Flash, Error string
	Link         *linkView
	Timeline     []TimelineItem
	TimelineNote string
}

// flashes are the messages an action's redirect asks the page to show
// (?done=...): fixed text, so a link cannot make the page say anything.
var flashes = map[string]string{
	"refreshed":    "Refreshed: the connection holds a new token set.",
	"disconnected": "Disconnected: the tokens are wiped and nothing is refreshed until the customer connects again.",
}

// connection serves GET /ui/connections/{id}.
func (s *Server) connection(w http.ResponseWriter, r *http.Request, sess *session) {
	s.showConnection(w, r, sess, http.StatusOK, connectionData{Flash: flashes[r.URL.Query().Get("done")]})
}

// showConnection renders the connection page with d's messages and link.
func (s *Server) showConnection(w http.ResponseWriter, r *http.Request, sess *session, status int, d connectionData) {
	id, ok := s.pathID(w, r, sess)
	if !ok {
		return
	}
	rec, err := s.cfg.Store.GetConnection(r.Context(), id)
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound {
		s.fail(w, r, sess, http.StatusNotFound, "No such connection", "There is no connection "+string(id)+". It may have been removed by retention.")
		return
	}
	if err != nil {
		s.storeFailed(w, r, sess, err)
		return
	}
	d.Conn, d.Badge, d.Expiry = &rec.Connection, badge(&rec.Connection), rec.Tokens.Expiry
	if s.cfg.Timeline == nil {
		d.TimelineNote = "The event timeline is not configured in this service."
	} else if items, err := s.cfg.Timeline(r.Context(), id); err != nil {
		s.log.WarnContext(r.Context(), "webui: timeline", "connection", id, "error", err)
		d.TimelineNote = "The timeline could not be read just now; reload to try again."
	} else {
		d.Timeline = items
		if len(items) == 0 {
			d.TimelineNote = "Nothing has happened to this connection yet."
		}
	}
	s.render(w, r, sess, status, "connection", string(id), "connections", d)
}

// pathID returns the {id} of the route, or answers 404 for one that
// cannot be a connection id.
func (s *Server) pathID(w http.ResponseWriter, r *http.Request, sess *session) (tokenkeeper.ConnectionID, bool) {
	id := tokenkeeper.ConnectionID(r.PathValue("id"))
	if id.Validate() != nil {
		s.fail(w, r, sess, http.StatusNotFound, "No such connection", "That is not a connection id.")
		return "", false
	}
	return id, true
}

// actionFailed shows the connection page with what went wrong.
func (s *Server) actionFailed(w http.ResponseWriter, r *http.Request, sess *session, what string, err error) {
	code := tokenkeeper.ErrorCode(err)
	status, text := http.StatusInternalServerError, what+" failed on our side; the log has the cause."
	switch code {
	case tokenkeeper.CodeNotFound:
		status, text = http.StatusNotFound, what+" failed: the connection does not exist."
	case tokenkeeper.CodeReconnectRequired:
		status, text = http.StatusConflict, what+" failed: the grant is dead, so the customer must connect again. Create a connect link and send it to them."
	case tokenkeeper.CodeUnavailable:
		status, text = http.StatusServiceUnavailable, what+" failed: the provider or the store is unavailable, or another refresh is running. Try again in a moment."
	case tokenkeeper.CodeInvalid, tokenkeeper.CodeConflict, tokenkeeper.CodeForbidden:
		status, text = http.StatusConflict, what+" failed: "+tokenkeeper.ErrorMessage(err)
	default:
		s.log.ErrorContext(r.Context(), "webui: action failed", "action", what, "error", err)
	}
	s.showConnection(w, r, sess, status, connectionData{Error: text})
}

// refresh serves POST /ui/connections/{id}/refresh: a forced refresh, as
// POST /v1/connections/{id}/refresh. The token is dropped unseen.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request, sess *session) {
	id, ok := s.pathID(w, r, sess)
	if !ok {
		return
	}
	if _, err := s.cfg.Keeper.Refresh(r.Context(), id); err != nil {
		s.actionFailed(w, r, sess, "Force refresh", err)
		return
	}
	s.audit(r, sess, "connection.refresh", id, "")
	s.redirect(w, r, "/connections/"+url.PathEscape(string(id))+"?done=refreshed")
}

// disconnect serves POST /ui/connections/{id}/disconnect (with the
// confirmation box ticked), as DELETE /v1/connections/{id}.
func (s *Server) disconnect(w http.ResponseWriter, r *http.Request, sess *session) {
	id, ok := s.pathID(w, r, sess)
	if !ok {
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		s.showConnection(w, r, sess, http.StatusBadRequest, connectionData{Error: "Tick the box to confirm, then press Disconnect."})
		return
	}
	if err := s.cfg.Keeper.Disconnect(r.Context(), id, "disconnected by apikey:"+string(sess.keyID)+" in the dashboard"); err != nil {
		s.actionFailed(w, r, sess, "Disconnect", err)
		return
	}
	s.audit(r, sess, "connection.delete", id, "revoke=false")
	s.redirect(w, r, "/connections/"+url.PathEscape(string(id))+"?done=disconnected")
}

// newConnectLink serves POST /ui/connect-link (form field connection_id): a
// connect link for a connection that may not exist yet, to onboard a
// customer (or reconnect one by id).
func (s *Server) newConnectLink(w http.ResponseWriter, r *http.Request, sess *session) {
	id := tokenkeeper.ConnectionID(strings.TrimSpace(r.PostForm.Get("connection_id")))
	if err := id.Validate(); err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, "Not a connection id",
			"A connection id is 1 to 128 letters, digits and the characters . _ : @ -. ("+tokenkeeper.ErrorMessage(err)+".)")
		return
	}
	link, err := s.cfg.Flow.NewLink(r.Context(), connect.LinkRequest{ConnectionID: id})
	if err != nil {
		s.log.WarnContext(r.Context(), "webui: create a connect link", "connection", id, "error", err)
		s.fail(w, r, sess, http.StatusServiceUnavailable, "The link could not be made", "The connect link could not be made just now. Try again in a moment.")
		return
	}
	s.audit(r, sess, "connect_session.create", id, "expires_at="+link.ExpiresAt.UTC().Format(time.RFC3339))
	u := strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + "/connect/" + url.PathEscape(link.Token.Reveal())
	s.render(w, r, sess, http.StatusOK, "newlink", "Connect link for "+string(id), "connections",
		newLinkData{ID: id, Link: linkView{URL: u, ExpiresAt: link.ExpiresAt}})
}

type newLinkData struct {
	ID   tokenkeeper.ConnectionID
	Link linkView
}

// connectLink serves POST /ui/connections/{id}/connect-link, as POST
// /v1/connect-sessions: it answers with the page itself, showing the link
// (a redirect would have to put the link in a URL).
func (s *Server) connectLink(w http.ResponseWriter, r *http.Request, sess *session) {
	id, ok := s.pathID(w, r, sess)
	if !ok {
		return
	}
	link, err := s.cfg.Flow.NewLink(r.Context(), connect.LinkRequest{ConnectionID: id})
	if err != nil {
		s.actionFailed(w, r, sess, "Create connect link", err)
		return
	}
	s.audit(r, sess, "connect_session.create", id, "expires_at="+link.ExpiresAt.UTC().Format(time.RFC3339))
	u := strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + "/connect/" + url.PathEscape(link.Token.Reveal())
	s.showConnection(w, r, sess, http.StatusOK, connectionData{Link: &linkView{URL: u, ExpiresAt: link.ExpiresAt}})
}
