package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tokenkeeper/tokenkeeper"
)

// CreateAPIKey calls POST /v1/api-keys (scope admin). It returns the new
// key, which the server shows this once, with its record.
func (c *Client) CreateAPIKey(ctx context.Context, name string, scopes []tokenkeeper.Scope) (*CreatedAPIKey, error) {
	var out CreatedAPIKey
	if err := c.do(ctx, http.MethodPost, "/v1/api-keys", nil, CreateAPIKeyRequest{Name: name, Scopes: scopes}, &out); err != nil {
		return nil, err
	}
	if out.Key.IsZero() {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "httpapi client: the server's answer holds no key")
	}
	return &out, nil
}

// ListAPIKeys calls GET /v1/api-keys (scope admin): every key's record,
// revoked ones included, oldest first.
func (c *Client) ListAPIKeys(ctx context.Context) ([]*APIKey, error) {
	var out APIKeyList
	if err := c.do(ctx, http.MethodGet, "/v1/api-keys", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.APIKeys, nil
}

// RevokeAPIKey calls DELETE /v1/api-keys/{id} (scope admin) and returns the
// revoked key's record. Revoking a revoked key is not an error.
func (c *Client) RevokeAPIKey(ctx context.Context, id tokenkeeper.APIKeyID) (*APIKey, error) {
	var out APIKey
	if err := c.do(ctx, http.MethodDelete, "/v1/api-keys/"+segment(string(id)), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAuditOptions selects entries for [Client.ListAudit]. The zero value
// lists the newest 100.
type ListAuditOptions struct {
	ConnectionID tokenkeeper.ConnectionID
	// Limit is the page size, 1 to 1000; 0 means 100.
	Limit int
	// Cursor is a previous page's NextCursor; "" starts at the newest.
	Cursor string
}

// ListAudit calls GET /v1/audit (scope admin): entries newest first.
func (c *Client) ListAudit(ctx context.Context, opts ListAuditOptions) (*AuditList, error) {
	q := url.Values{}
	set(q, "connection_id", string(opts.ConnectionID))
	set(q, "cursor", opts.Cursor)
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var out AuditList
	if err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
