package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// backend is the store a command works on: every tokenkeeper.Store method plus API keys
// and the audit log. Both stores implement it.
type backend interface {
	tokenkeeper.Store
	tokenkeeper.APIKeyStore
	tokenkeeper.AuditLog
}

// openStore opens the --store, migrating it to the current schema first: every command
// that opens a store does, so `apikeys create` works on a new path before serve ever ran.
func openStore(ctx context.Context, s *settings) (backend, error) {
	kind, where, err := parseStore(s.store)
	if err != nil {
		return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("store"), err)}
	}
	switch kind {
	case "sqlite":
		st, err := sqlite.Open(ctx, where)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", s.store, err)
		}
		return st, nil
	default:
		return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf(
			"%s: this build has no PostgreSQL store yet; use sqlite:PATH", s.f.source("store"))}
	}
}

// loadKeys reads the --key-file keyset into a Keyring.
func loadKeys(s *settings) (*seal.Keyring, error) {
	if err := s.requireKeyFile(); err != nil {
		return nil, err
	}
	ks, err := seal.Load(s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.f.source("key-file"), err)
	}
	return seal.NewKeyring(ks), nil
}

// newLogger returns the logger of a command: text or JSON on w, at level.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newKeeper builds the refresh authority over st. The provider settings and client
// credentials must have been checked (requireClient).
func newKeeper(s *settings, st tokenkeeper.Store, keys tokenkeeper.Sealer, log *slog.Logger, cfg keeper.Config) (*keeper.Keeper, error) {
	cfg.Store, cfg.Sealer, cfg.Provider = st, keys, s.prov
	cfg.ClientID, cfg.ClientSecret = s.clientID, s.clientSecret
	cfg.Logger = log
	return keeper.New(cfg)
}

// newFlow builds the connect flow. The public URL must have been checked.
func newFlow(s *settings, st tokenkeeper.Store, keys tokenkeeper.Sealer, k connect.Keeper, log *slog.Logger) (*connect.Flow, error) {
	return connect.New(connect.Config{
		Provider:          s.prov,
		ClientID:          s.clientID,
		ClientSecret:      s.clientSecret,
		RedirectURL:       s.redirectURL(),
		Scopes:            s.scopeList(),
		Store:             st,
		Sealer:            keys,
		Keeper:            k,
		AllowedReturnURLs: s.allowedReturnURLs,
		LinkTTL:           s.linkTTL,
		Logger:            log,
	})
}

// cliActor names the person running an admin command on the store, for the audit trail.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v := os.Getenv("USER"); v != "" {
		name = v
	}
	return "cli:" + name
}
