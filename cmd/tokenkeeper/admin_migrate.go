package main

import (
	"context"
	"fmt"
	"io"
)

const migrateUsage = `Usage: tokenkeeper migrate [--store STORE]

Migrates the store to this build's schema, creating it if it does not exist, and prints
the schema version if the store reports one. Every command that opens a store migrates
it first, so running migrate is optional: it lets a deployment migrate in a step of its
own, before new replicas start. A store whose schema is newer than this build is refused.

Only migrate, serve, dev and "apikeys create" create a SQLite store that does not exist;
the other commands refuse a path with no store (exit 2), so that a mistyped --store, or
the default sqlite:tokenkeeper.db in another working directory, is not taken for an
empty store.

Flags, each with the environment variable that sets it when the flag is absent:
`

// schemaVersioner is a store that reports its schema version.
type schemaVersioner interface {
	SchemaVersion(ctx context.Context) (int, error)
}

// runMigrate runs `tokenkeeper migrate`.
func runMigrate(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper migrate", groupStore)
	if _, err := parseSettings(s, migrateUsage, stdout, args); err != nil {
		return err
	}
	st, err := openStore(ctx, s, createStore)
	if err != nil {
		return err
	}
	defer st.Close()
	if v, ok := st.(schemaVersioner); ok {
		n, err := v.SchemaVersion(ctx)
		if err != nil {
			return fmt.Errorf("read the schema version of %s: %w", redactStore(s.store), err)
		}
		_, err = fmt.Fprintf(stdout, "store %s: schema version %d, up to date\n", redactStore(s.store), n)
		return err
	}
	_, err = fmt.Fprintf(stdout, "store %s: up to date\n", redactStore(s.store))
	return err
}
