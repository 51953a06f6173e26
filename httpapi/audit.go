package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// audit appends an entry for an action that has succeeded. The action
// stands whatever happens here, so a failure to append is logged at error
// and not returned: the response tells the caller what was done.
func (s *Server) audit(r *http.Request, key *tokenkeeper.APIKey, action string, id tokenkeeper.ConnectionID, detail string) {
	e := &tokenkeeper.AuditEntry{Time: s.now().UTC().Truncate(time.Microsecond), Actor: actor(key),
		Action: action, ConnectionID: id, Detail: detail}
	// Detached: the caller hanging up must not lose the record of what
	// it did.
	if err := s.cfg.Audit.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.ErrorContext(r.Context(), "http: the action succeeded but its audit entry was not recorded",
			"action", action, "actor", e.Actor, "connection", id, "error", err)
	}
}

// AuditEntry is the JSON form of one audit entry. ConnectionID and Detail
// are "" when the action had none.
type AuditEntry struct {
	ID           int64                    `json:"id"`
	Time         time.Time                `json:"time"`
	Actor        string                   `json:"actor"`
	Action       string                   `json:"action"`
	ConnectionID tokenkeeper.ConnectionID `json:"connection_id"`
	Detail       string                   `json:"detail"`
}

// AuditList is a page of GET /v1/audit, newest first. NextCursor, when not
// empty, is the cursor of the next (older) page.
type AuditList struct {
	Entries    []*AuditEntry `json:"entries"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// listAudit serves GET /v1/audit?connection_id=&limit=&cursor=.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	q, err := queryOf(r, "connection_id", "limit", "cursor")
	if err != nil {
		return err
	}
	f := tokenkeeper.AuditFilter{ConnectionID: tokenkeeper.ConnectionID(q["connection_id"])}
	if err := f.ConnectionID.Validate(); f.ConnectionID != "" && err != nil {
		return invalidf("connection_id: %s", tokenkeeper.ErrorMessage(err))
	}
	if raw := q["cursor"]; raw != "" {
		if f.Before, err = strconv.ParseInt(raw, 10, 64); err != nil || f.Before < 1 {
			return invalidf("cursor is not one this API returned")
		}
	}
	limit, err := limitOf(q["limit"])
	if err != nil {
		return err
	}
	f.Limit = limit + 1
	entries, err := s.cfg.Audit.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := AuditList{Entries: []*AuditEntry{}}
	for i, e := range entries {
		if i == limit {
			break
		}
		out.Entries = append(out.Entries, &AuditEntry{ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor,
			Action: e.Action, ConnectionID: e.ConnectionID, Detail: e.Detail})
	}
	if len(entries) > limit || (len(entries) == limit && limit == maxLimit) {
		out.NextCursor = strconv.FormatInt(entries[limit-1].ID, 10)
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}
