package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// deleteConnection serves DELETE /v1/connections/{id}[?revoke=true]: it
// disconnects the connection (its tokens are wiped; the record stays). With
// revoke=true it first revokes the grant at the provider
// (Keeper.Uninstall); if that fails, nothing is wiped and the error is
// returned (503 when the provider is unavailable). Once the provider has
// revoked, the revocation is audited at once and the disconnect runs on a
// context the caller cannot cancel: a caller hanging up between the two
// must not leave a connection active whose grant is gone.
func (s *Server) deleteConnection(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	q, err := queryOf(r, "revoke")
	if err != nil {
		return err
	}
	revoke, err := boolOf(q, "revoke")
	if err != nil {
		return err
	}
	ctx := r.Context()
	reason := "disconnected by " + actor(key)
	if revoke {
		if err := s.cfg.Keeper.Uninstall(ctx, id); err != nil {
			return err
		}
		s.audit(r, key, "connection.uninstall", id, "revoked at the provider")
		reason = "revoked and disconnected by " + actor(key)
		ctx = context.WithoutCancel(ctx)
	}
	if err := s.cfg.Keeper.Disconnect(ctx, id, reason); err != nil {
		return err
	}
	detail := "revoke=false"
	if revoke {
		detail = "revoke=true"
	}
	s.audit(r, key, "connection.delete", id, detail)
	return s.writeConnection(w, r, id)
}

// refresh serves POST /v1/connections/{id}/refresh: an operator's forced
// refresh. It answers with the connection, never the token.
func (s *Server) refresh(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	if _, err := s.cfg.Keeper.Refresh(r.Context(), id); err != nil {
		return err
	}
	s.audit(r, key, "connection.refresh", id, "")
	return s.writeConnection(w, r, id)
}

// writeConnection answers with the connection as stored now.
func (s *Server) writeConnection(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID) error {
	rec, err := s.cfg.Store.GetConnection(r.Context(), id)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, FromRecord(rec))
	return nil
}

// PruneResult is the JSON body of POST /v1/connections/prune: the
// connections removed (or, with dry_run, that would be), as they were
// before removal.
type PruneResult struct {
	Pruned []*Connection `json:"pruned"`
	DryRun bool          `json:"dry_run"`
}

// prune serves POST /v1/connections/prune[?dry_run=true] with
// Config.Retention. Each removal is audited, including those made before a
// failure stopped the prune.
func (s *Server) prune(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	q, err := queryOf(r, "dry_run")
	if err != nil {
		return err
	}
	dryRun, err := boolOf(q, "dry_run")
	if err != nil {
		return err
	}
	if s.cfg.Retention <= 0 {
		return invalidf("pruning needs a retention, and this server has none configured")
	}
	pruned, err := s.cfg.Keeper.Prune(r.Context(), s.cfg.Retention, dryRun)
	out := PruneResult{Pruned: []*Connection{}, DryRun: dryRun}
	for _, c := range pruned {
		if !dryRun {
			s.audit(r, key, "connection.prune", c.ID, "retention="+s.cfg.Retention.String())
		}
		out.Pruned = append(out.Pruned, FromConnection(c, time.Time{}))
	}
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}
