package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// backend is the store a command works on: every tokenkeeper.Store method plus API keys
// and the audit log. Both stores implement it.
type backend interface {
	tokenkeeper.Store
	tokenkeeper.APIKeyStore
	tokenkeeper.AuditLog
	tokenkeeper.EventLog
	tokenkeeper.WebhookStore
}

// storeMode says whether a command may create the store it opens.
type storeMode int

const (
	// existingStore: the store must exist. A command that would work on a new, empty
	// store where the operator meant an existing one (a wrong --store, or the default
	// sqlite:tokenkeeper.db resolved against another working directory) must fail
	// rather than report "0 connections", or worse, act on that emptiness.
	existingStore storeMode = iota
	// createStore: a SQLite file that does not exist is created. Only the commands that
	// set up a store use it: serve, dev, migrate, and apikeys create (so that a key can
	// be made before serve ever ran).
	createStore
)

// openStore opens the --store, migrating it to the current schema first. With
// existingStore, a SQLite path that does not exist is a usage error naming the setting
// and the absolute path, and nothing is created; a postgres:// store is opened as given
// either way (its database must exist; the schema is migrated), and a URL whose
// settings pgx refuses is a usage error.
func openStore(ctx context.Context, s *settings, mode storeMode) (backend, error) {
	kind, where, err := parseStore(s.store)
	if err != nil {
		return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("store"), err)}
	}
	switch kind {
	case "sqlite":
		if mode != createStore {
			if err := requireSQLiteFile(s, where); err != nil {
				return nil, err
			}
		}
		st, err := sqlite.Open(ctx, where)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", s.store, err)
		}
		return st, nil
	default:
		st, err := postgres.Open(ctx, where)
		if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeInvalid { // a URL setting pgx refuses
			return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("store"), err)}
		}
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", redactStore(s.store), err)
		}
		return st, nil
	}
}

// requireSQLiteFile fails with a usage error if the SQLite file path does not exist. It
// names the path made absolute, since a relative one (the default tokenkeeper.db) is
// resolved against the working directory, which is what an operator gets wrong. Another
// failure to stat the file is left to sqlite.Open, which reports it.
func requireSQLiteFile(s *settings, path string) error {
	_, err := os.Stat(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		abs = path
	}
	return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf(
		"%s: no store at %s (sqlite); create one with \"tokenkeeper migrate --store sqlite:%s\", or point --store at the existing one",
		s.f.source("store"), abs, abs)}
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

// storeLabel names the --store for messages: a SQLite path made absolute (the working
// directory is what a relative one depends on), a URL without its password.
func storeLabel(s *settings) string {
	if kind, where, err := parseStore(s.store); err == nil && kind == "sqlite" {
		if abs, err := filepath.Abs(where); err == nil {
			return "sqlite:" + abs
		}
	}
	return redactStore(s.store)
}
