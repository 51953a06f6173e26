package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tokenkeeper/tokenkeeper"
)

// ListConnectionsOptions selects connections for [Client.ListConnections].
// The zero value lists the first 100, in id order.
type ListConnectionsOptions struct {
	State  tokenkeeper.State
	Prefix string
	// Limit is the page size, 1 to 1000; 0 means 100.
	Limit int
	// Cursor is a previous page's NextCursor; "" starts at the beginning.
	Cursor string
}

// ListConnections calls GET /v1/connections (scope tokens).
func (c *Client) ListConnections(ctx context.Context, opts ListConnectionsOptions) (*ConnectionList, error) {
	q := url.Values{}
	set(q, "state", string(opts.State))
	set(q, "prefix", opts.Prefix)
	set(q, "cursor", opts.Cursor)
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var out ConnectionList
	if err := c.do(ctx, http.MethodGet, "/v1/connections", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetConnection calls GET /v1/connections/{id} (scope tokens).
func (c *Client) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*Connection, error) {
	return c.connection(ctx, http.MethodGet, connectionPath(id, ""), nil)
}

// DeleteConnection calls DELETE /v1/connections/{id} (scope admin): it
// disconnects the connection and, with revoke, first revokes its grant at
// the provider. It returns the connection as it is afterwards.
func (c *Client) DeleteConnection(ctx context.Context, id tokenkeeper.ConnectionID, revoke bool) (*Connection, error) {
	var q url.Values
	if revoke {
		q = url.Values{"revoke": {"true"}}
	}
	return c.connection(ctx, http.MethodDelete, connectionPath(id, ""), q)
}

// RefreshConnection calls POST /v1/connections/{id}/refresh (scope admin):
// a forced refresh. It returns the connection, not the token.
func (c *Client) RefreshConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*Connection, error) {
	return c.connection(ctx, http.MethodPost, connectionPath(id, "/refresh"), nil)
}

// Token calls POST /v1/connections/{id}/token (scope tokens) and returns
// the access token with the time until which it is promised valid. Errors
// carry the keeper's codes: CodeNotFound, CodeReconnectRequired,
// CodeUnavailable.
func (c *Client) Token(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	return c.token(ctx, id, nil)
}

// TokenAfterRejection is [Client.Token] for a caller whose token the
// provider refused with a 401: it sends rejected, the token that got the
// 401, as {"rejected_token"}, and returns a fresh token. The server
// refreshes only if rejected is still the connection's current token, so
// any number of callers reporting one token cost one refresh; if the token
// changed meanwhile, the current one comes back at no cost. Call it once
// per 401 and retry the provider's call once with the result; if that gets
// a 401 too, the cause is not a stale token, and reporting again would only
// cost another refresh. If the result is rejected itself, the server made no
// refresh (that token replaced a refused one moments ago, and the keeper
// bounds such refreshes): do not retry with it.
//
// Errors are Token's: CodeReconnectRequired when the refresh finds the
// grant dead (the user must connect again). A zero rejected fails with
// CodeInvalid before any request. rejected travels only in the request
// body, never in an error.
func (c *Client) TokenAfterRejection(ctx context.Context, id tokenkeeper.ConnectionID, rejected tokenkeeper.Secret) (tokenkeeper.AccessToken, error) {
	if rejected.IsZero() {
		return tokenkeeper.AccessToken{}, tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"httpapi client: the rejected token is empty")
	}
	raw, err := json.Marshal(rejected.Reveal())
	if err != nil { // a string always encodes
		return tokenkeeper.AccessToken{}, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "httpapi client: encode the rejected token")
	}
	return c.token(ctx, id, tokenRequest{RejectedToken: raw})
}

// token calls the token route with body, nil for none.
func (c *Client) token(ctx context.Context, id tokenkeeper.ConnectionID, body any) (tokenkeeper.AccessToken, error) {
	var out TokenResponse
	if err := c.do(ctx, http.MethodPost, connectionPath(id, "/token"), nil, body, &out); err != nil {
		return tokenkeeper.AccessToken{}, err
	}
	if out.AccessToken.IsZero() || out.TokenType != "Bearer" {
		return tokenkeeper.AccessToken{}, tokenkeeper.Errorf(tokenkeeper.CodeInternal,
			"httpapi client: the token response has no bearer token")
	}
	return tokenkeeper.AccessToken{Value: out.AccessToken, ExpiresAt: out.ExpiresAt}, nil
}

// CreateConnectSession calls POST /v1/connect-sessions (scope admin) and
// returns the single-use link to hand to the user.
func (c *Client) CreateConnectSession(ctx context.Context, req ConnectSessionRequest) (*ConnectSession, error) {
	var out ConnectSession
	if err := c.do(ctx, http.MethodPost, "/v1/connect-sessions", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Prune calls POST /v1/connections/prune (scope admin) with the server's
// retention. With dryRun it removes nothing and returns what it would.
func (c *Client) Prune(ctx context.Context, dryRun bool) (*PruneResult, error) {
	var q url.Values
	if dryRun {
		q = url.Values{"dry_run": {"true"}}
	}
	var out PruneResult
	if err := c.do(ctx, http.MethodPost, "/v1/connections/prune", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) connection(ctx context.Context, method, path string, q url.Values) (*Connection, error) {
	var out Connection
	if err := c.do(ctx, method, path, q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func connectionPath(id tokenkeeper.ConnectionID, suffix string) string {
	return "/v1/connections/" + segment(string(id)) + suffix
}

func set(q url.Values, name, value string) {
	if value != "" {
		q.Set(name, value)
	}
}
