package webui

import (
	"net/http"
	"net/url"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// pageSize is how many connections a page of the table shows.
const pageSize = 50

type connRow struct {
	ID          tokenkeeper.ConnectionID
	Badge       string // active, degraded, reconnect_required, disconnected
	Subject     string
	Expiry      time.Time
	LastRefresh time.Time
	NextRefresh time.Time
	LastError   string
}

type connectionsData struct {
	State, Query string
	StateOptions []string
	After        tokenkeeper.ConnectionID
	Rows         []connRow
	FirstURL     string
	NextURL      string
	Error        string
}

// badge is the state a connection shows: its State, or "degraded" for an
// active one whose refreshes are failing.
func badge(c *tokenkeeper.Connection) string {
	if c.State == tokenkeeper.StateActive && c.Degraded() {
		return "degraded"
	}
	return string(c.State)
}

// connections serves GET /ui/connections?state=&q=&after=: one page of
// the table, in id order, by keyset pagination (ListConnections with
// After), so that each page costs one indexed range read however many
// connections there are.
func (s *Server) connections(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	d := connectionsData{State: q.Get("state"), Query: q.Get("q"),
		StateOptions: []string{string(tokenkeeper.StateActive), string(tokenkeeper.StateReconnectRequired), string(tokenkeeper.StateDisconnected)},
		After:        tokenkeeper.ConnectionID(q.Get("after"))}
	status := http.StatusOK
	switch {
	case d.State != "" && !tokenkeeper.State(d.State).Valid():
		d.Error = "Choose a state from the list."
	case d.Query != "" && tokenkeeper.ConnectionID(d.Query).Validate() != nil:
		d.Error = "Connection ids hold only letters, digits and . _ : @ -, so none starts with that."
	case d.After != "" && d.After.Validate() != nil:
		d.Error = "That page link is broken."
	}
	f := tokenkeeper.ConnectionFilter{State: tokenkeeper.State(d.State), IDPrefix: d.Query, After: d.After, Limit: pageSize + 1}
	if d.Error != "" {
		// Show the first page of everything under the message.
		status, d.State, d.Query, d.After = http.StatusBadRequest, "", "", ""
		f = tokenkeeper.ConnectionFilter{Limit: pageSize + 1}
	}
	recs, err := s.cfg.Store.ListConnections(r.Context(), f)
	if err != nil {
		s.storeFailed(w, r, sess, err)
		return
	}
	more := len(recs) > pageSize
	if more {
		recs = recs[:pageSize]
	}
	for _, rec := range recs {
		d.Rows = append(d.Rows, connRow{ID: rec.ID, Badge: badge(&rec.Connection), Subject: rec.Subject,
			Expiry: rec.Tokens.Expiry, LastRefresh: rec.LastRefreshAt, NextRefresh: rec.NextRefreshAt, LastError: rec.LastError})
	}
	link := func(after tokenkeeper.ConnectionID) string {
		v := url.Values{}
		if d.State != "" {
			v.Set("state", d.State)
		}
		if d.Query != "" {
			v.Set("q", d.Query)
		}
		if after != "" {
			v.Set("after", string(after))
		}
		if len(v) == 0 {
			return s.base + "/connections"
		}
		return s.base + "/connections?" + v.Encode()
	}
	d.FirstURL = link("")
	if more {
		d.NextURL = link(recs[len(recs)-1].ID)
	}
	s.render(w, r, sess, status, "connections", "Connections", "connections", d)
}
