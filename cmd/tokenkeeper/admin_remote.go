package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// envAPIKey holds the API key of the admin commands' remote mode. Like the client secret,
// it never comes from a flag, where `ps` would show it.
const envAPIKey = "TOKENKEEPER_API_KEY"

// remoteTimeout bounds one call to a running service.
const remoteTimeout = 5 * time.Minute

// remoteFlags are the flags of an admin command that can call a running service instead
// of opening the store.
type remoteFlags struct {
	server     string
	apiKeyFile string
}

func addRemoteFlags(s *settings) *remoteFlags {
	r := &remoteFlags{}
	s.f.stringVar(&r.server, "server", "",
		"call the running service at `URL` through its HTTP API instead of opening the store; the API key comes from $"+envAPIKey+" or --api-key-file")
	s.f.stringVar(&r.apiKeyFile, "api-key-file", "", "with --server, read the API key from `FILE` instead of $"+envAPIKey)
	return r
}

// client returns the client of --server, or nil if --server is not set. A bad URL, or a
// missing or malformed API key, is a usage error that never repeats the key.
func (r *remoteFlags) client(s *settings) (*httpapi.Client, error) {
	if r.server == "" {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf(format, args...)}
	}
	if err := checkHTTPURL(r.server); err != nil {
		return nil, bad("%s: %v", s.f.source("server"), err)
	}
	u, _ := url.Parse(r.server)
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("%s: %q has a query or fragment", s.f.source("server"), r.server)
	}
	fromEnv, _ := s.lookupEnv(envAPIKey)
	fromEnv = strings.TrimSpace(fromEnv)
	var key, where string
	switch {
	case fromEnv != "" && r.apiKeyFile != "":
		return nil, bad("both $%s and %s are set; use one", envAPIKey, s.f.source("api-key-file"))
	case r.apiKeyFile != "":
		data, err := os.ReadFile(r.apiKeyFile)
		if err != nil {
			return nil, bad("%s: %v", s.f.source("api-key-file"), err)
		}
		key, where = strings.TrimSpace(string(data)), s.f.source("api-key-file")
	case fromEnv != "":
		key, where = fromEnv, "$"+envAPIKey
	default:
		return nil, bad("%s needs an API key: set $%s or --api-key-file", s.f.source("server"), envAPIKey)
	}
	secret := tokenkeeper.NewSecret(key)
	if _, err := tokenkeeper.ParseAPIKey(secret); err != nil {
		return nil, bad("the API key from %s is not an API key (tk_...)", where)
	}
	return &httpapi.Client{BaseURL: u, APIKey: secret, HTTPClient: &http.Client{Timeout: remoteTimeout}}, nil
}

// remoteListConnections pages through a service's connections, up to limit (0: all).
func remoteListConnections(ctx context.Context, c *httpapi.Client, f tokenkeeper.ConnectionFilter, limit int) ([]*httpapi.Connection, error) {
	const page = 1000 // the API's largest page
	out := []*httpapi.Connection{}
	opts := httpapi.ListConnectionsOptions{State: f.State, Prefix: f.IDPrefix}
	for {
		opts.Limit = page
		if limit > 0 {
			opts.Limit = min(page, limit-len(out))
		}
		res, err := c.ListConnections(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list connections: %w", err)
		}
		out = append(out, res.Connections...)
		if res.NextCursor == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		opts.Cursor = res.NextCursor
	}
}

// remoteListAudit pages through a service's audit trail, newest first, up to limit (0:
// all).
func remoteListAudit(ctx context.Context, c *httpapi.Client, id tokenkeeper.ConnectionID, limit int) ([]*httpapi.AuditEntry, error) {
	const page = 1000
	out := []*httpapi.AuditEntry{}
	opts := httpapi.ListAuditOptions{ConnectionID: id}
	for {
		opts.Limit = page
		if limit > 0 {
			opts.Limit = min(page, limit-len(out))
		}
		res, err := c.ListAudit(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list the audit trail: %w", err)
		}
		out = append(out, res.Entries...)
		if res.NextCursor == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		opts.Cursor = res.NextCursor
	}
}

// errRemoteOnly is the refusal of a flag that only the store-direct mode honours.
func errRemoteOnly(s *settings, name, why string) error {
	return &usageError{cmd: s.f.fs.Name(), err: errors.New(s.f.source(name) + " cannot be used with --server: " + why)}
}
