package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Connection is the JSON form of a connection: what tokenkeeper knows about
// one authorisation, never its tokens. Every field is always present; a
// time that is not set (a connection never refreshed, a healthy one's
// degraded_since, a disconnected one's token expiry) is null. Times are RFC
// 3339 in UTC, with fractional seconds when they have them.
type Connection struct {
	ID       tokenkeeper.ConnectionID `json:"id"`
	Provider string                   `json:"provider"`
	// Subject is who the grant is for ("urn:pleo:company:<uuid>"); "" until
	// learned.
	Subject string `json:"subject"`
	// Scopes are the granted scopes; never null.
	Scopes        []string          `json:"scopes"`
	State         tokenkeeper.State `json:"state"`
	Degraded      bool              `json:"degraded"`
	DegradedSince *time.Time        `json:"degraded_since"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	LastRefreshAt *time.Time        `json:"last_refresh_at"`
	NextRefreshAt *time.Time        `json:"next_refresh_at"`
	// AccessTokenExpiresAt is the provider's expiry of the current access
	// token (not the keeper's earlier promise, which POST .../token
	// returns); null when the connection holds no token, and always null in
	// the connections a prune returns.
	AccessTokenExpiresAt *time.Time `json:"access_token_expires_at"`
	// LastError is a human reason for the last failure; "" if none.
	LastError string `json:"last_error"`
	// Metadata is the integrator's own; never null.
	Metadata   map[string]string `json:"metadata"`
	Generation int64             `json:"generation"`
}

// ConnectionList is a page of GET /v1/connections. NextCursor, when not
// empty, is the cursor of the next page; it is left out on the last page
// (rarely, a full page is followed by an empty last one).
type ConnectionList struct {
	Connections []*Connection `json:"connections"`
	NextCursor  string        `json:"next_cursor,omitempty"`
}

// FromConnection returns the JSON form of c, with tokenExpiry (the
// provider's expiry of its access token; the zero time for none).
func FromConnection(c *tokenkeeper.Connection, tokenExpiry time.Time) *Connection {
	out := &Connection{
		ID: c.ID, Provider: c.Provider, Subject: c.Subject, Scopes: c.Scopes, State: c.State,
		Degraded: c.Degraded(), DegradedSince: optTime(c.DegradedSince),
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
		LastRefreshAt: optTime(c.LastRefreshAt), NextRefreshAt: optTime(c.NextRefreshAt),
		AccessTokenExpiresAt: optTime(tokenExpiry),
		LastError:            c.LastError, Metadata: c.Metadata, Generation: c.Generation,
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	return out
}

// FromRecord returns the JSON form of a stored connection: never its
// tokens, only their expiry.
func FromRecord(rec *tokenkeeper.Record) *Connection {
	return FromConnection(&rec.Connection, rec.Tokens.Expiry)
}

// optTime returns nil for the zero time, else t in UTC.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// pathID returns the {id} of the route, checked.
func pathID(r *http.Request) (tokenkeeper.ConnectionID, error) {
	id := tokenkeeper.ConnectionID(r.PathValue("id"))
	if err := id.Validate(); err != nil {
		return "", err
	}
	return id, nil
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	rec, err := s.cfg.Store.GetConnection(r.Context(), id)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, FromRecord(rec))
	return nil
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	q, err := queryOf(r, "state", "prefix", "limit", "cursor")
	if err != nil {
		return err
	}
	f := tokenkeeper.ConnectionFilter{State: tokenkeeper.State(q["state"]), IDPrefix: q["prefix"],
		After: tokenkeeper.ConnectionID(q["cursor"])}
	if f.State != "" && !f.State.Valid() {
		return invalidf("state %q is not one of active, reconnect_required, disconnected", q["state"])
	}
	if err := tokenkeeper.ConnectionID(f.IDPrefix).Validate(); f.IDPrefix != "" && err != nil {
		return invalidf("prefix: %s", tokenkeeper.ErrorMessage(err))
	}
	if err := f.After.Validate(); f.After != "" && err != nil {
		return invalidf("cursor is not one this API returned")
	}
	limit, err := limitOf(q["limit"])
	if err != nil {
		return err
	}
	f.Limit = limit + 1 // one more tells whether a next page exists
	recs, err := s.cfg.Store.ListConnections(r.Context(), f)
	if err != nil {
		return err
	}
	out := ConnectionList{Connections: []*Connection{}}
	for i, rec := range recs {
		if i == limit {
			break
		}
		out.Connections = append(out.Connections, FromRecord(rec))
	}
	// Stores cap a page at maxLimit, so a full page of maxLimit may have more.
	if len(recs) > limit || (len(recs) == limit && limit == maxLimit) {
		out.NextCursor = string(recs[limit-1].ID)
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}

// Page sizes of the listings.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// limitOf parses a limit: 1 to maxLimit, "" meaning defaultLimit.
func limitOf(raw string) (int, error) {
	if raw == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxLimit {
		return 0, invalidf("limit must be an integer from 1 to %d", maxLimit)
	}
	return n, nil
}
