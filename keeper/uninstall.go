package keeper

import (
	"context"
	"io"
	"net/http"

	"github.com/tokenkeeper/tokenkeeper"
)

// Uninstall revokes the connection's grant at the provider: it calls
// DELETE {Provider.APIURL}/v1/installations/me with the connection's
// token, through [Keeper.Client], so that a 401 gets the usual one guarded
// refresh and retry. Pleo then revokes every access and refresh token of
// the installation (this client and this company). It is bounded by
// RefreshTimeout as well as ctx.
//
// Uninstall does not change the connection: the caller calls
// [Keeper.Disconnect] after it succeeds (the HTTP API's DELETE with
// revoke=true does). A connection whose grant is already dead
// (reconnect_required or disconnected, or found dead by the retry after a
// 401) has nothing left to revoke, and Uninstall returns nil for it, as
// for a 2xx or a 404 (the installation is already gone).
//
// Errors: [tokenkeeper.CodeInvalid] for a bad id; [tokenkeeper.CodeNotFound]
// for an unknown connection; [tokenkeeper.CodeUnavailable] if no token can
// be had (the refresh is failing), the provider cannot be reached, or it
// answers another status (named in the message; the body is never read
// into an error).
func (k *Keeper) Uninstall(ctx context.Context, id tokenkeeper.ConnectionID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	rec, err := k.cfg.Store.GetConnection(ctx, id)
	if err != nil {
		return k.storeError(id, "read", err)
	}
	if rec.State != tokenkeeper.StateActive {
		k.log.Info("uninstall: the grant is already dead; nothing to revoke", "connection", id, "state", rec.State)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RefreshTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, k.cfg.Provider.APIURL+"/v1/installations/me", nil)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "uninstall connection %s: %w", id, err)
	}
	resp, err := k.Client(id, k.cfg.HTTPClient.Transport).Do(req)
	if err != nil {
		switch tokenkeeper.ErrorCode(err) {
		case tokenkeeper.CodeReconnectRequired:
			k.log.Info("uninstall: the grant is already dead; nothing to revoke", "connection", id)
			return nil
		case tokenkeeper.CodeNotFound:
			return tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "connection %s not found", id)
		}
		// The token error (its code) or the transport's, never a body.
		return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "uninstall connection %s: the provider could not be asked: %w", id, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotFound:
		k.log.Info("uninstall: the installation is revoked (or was already gone) at the provider", "connection", id, "status", resp.StatusCode)
		return nil
	case resp.StatusCode == http.StatusUnauthorized && k.dead(ctx, id):
		// The retry's refresh found the grant dead (the user uninstalled
		// the app in Pleo already): nothing is left to revoke.
		k.log.Info("uninstall: the grant is already dead; nothing to revoke", "connection", id)
		return nil
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "uninstall connection %s: the provider answered %d %s",
		id, resp.StatusCode, http.StatusText(resp.StatusCode))
}

// dead reports whether the store says the connection's grant is dead.
func (k *Keeper) dead(ctx context.Context, id tokenkeeper.ConnectionID) bool {
	rec, err := k.cfg.Store.GetConnection(ctx, id)
	return err == nil && rec.State != tokenkeeper.StateActive
}
