package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

const apikeysUsage = `Usage: tokenkeeper apikeys <command> [flags]

Commands:
  create --name NAME --scopes SCOPES   make an API key for the HTTP API and print it, once
  list                                 list the keys: id, name, scopes, created, revoked
  revoke ID                            revoke a key; it is refused from the next request on

Scopes: tokens (read connections, take access tokens), proxy (call the provider's API
through the proxy), admin (everything, including connect links, deletions and API keys).

Each works on the store (--store) directly, or with --server URL through a running
service's HTTP API (with an admin key from $TOKENKEEPER_API_KEY or --api-key-file).
On the store, create works before serve ever ran: it creates a SQLite store that does
not exist yet (list and revoke refuse one, exit 2). Only the SHA-256 of a key is stored: the key is
printed once, by create, and never again.

Exit codes: 0 success, 1 runtime error, 2 usage error, 4 the key does not exist (revoke).
`

// runAPIKeys runs `tokenkeeper apikeys`.
func runAPIKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "tokenkeeper apikeys", apikeysUsage, []subcommand{
		{"create", runAPIKeysCreate},
		{"list", runAPIKeysList},
		{"revoke", runAPIKeysRevoke},
	}, args, stdout, stderr)
}

const apikeysCreateUsage = `Usage: tokenkeeper apikeys create --name NAME --scopes SCOPES [--json]

Makes an API key and prints it once: on stdout alone (so that KEY=$(...) captures it),
with a note on stderr that it is not shown again; with --json, as
{"key", "id", "name", "scopes", "created_at"}. Store it in a secret manager at once.

--name and --scopes come from the command line only ($TOKENKEEPER_SCOPES and a config
file's "scopes" are serve's OAuth scopes, and are not read here).

Flags, each with the environment variable that sets it when the flag is absent:
`

func runAPIKeysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper apikeys create", groupStore)
	r := addRemoteFlags(s)
	var name string
	var scopes []tokenkeeper.Scope
	var asJSON bool
	s.f.stringVar(&name, "name", "", "a `NAME` for the key, such as the service that will use it (required)")
	s.f.varValue(&value{
		set: func(v string) error {
			for _, part := range strings.Split(v, ",") {
				sc := tokenkeeper.Scope(strings.TrimSpace(part))
				if !sc.Valid() {
					return errors.New("want API key scopes (admin, tokens or proxy), comma-separated or repeated")
				}
				scopes = append(scopes, sc)
			}
			return nil
		},
		get:    func() string { return "" },
		isList: true,
	}, "scopes", "what the key may do: `SCOPES` among admin, tokens and proxy, comma-separated or repeated (required)")
	s.f.cliOnly("name", "scopes")
	s.f.boolVar(&asJSON, "json", false, "print the key and its record as JSON")
	if _, err := parseSettings(s, apikeysCreateUsage, stdout, args); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(name) == "":
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--name is required")}
	case len(scopes) == 0:
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--scopes is required: admin, tokens or proxy")}
	}
	var created *httpapi.CreatedAPIKey
	// after is a failure to report once the key is printed: a key that was made must
	// not be lost because its audit entry failed.
	var after error
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if created, err = c.CreateAPIKey(ctx, name, scopes); err != nil {
			return fmt.Errorf("create API key: %w", err)
		}
	} else if created, after = localCreateAPIKey(ctx, s, name, scopes); created == nil {
		return after
	}
	if asJSON {
		return errors.Join(writeJSON(stdout, created), after)
	}
	if _, err := fmt.Fprintln(stdout, created.Key.Reveal()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Created API key %s (name %q, scopes %s). Store the key above now: it is not shown again.\n",
		created.ID, created.Name, joinScopes(created.Scopes))
	return after
}

// localCreateAPIKey makes a key in the store. It returns nil if no key was made, and
// otherwise the key with its record and a failure to audit it, if any.
func localCreateAPIKey(ctx context.Context, s *settings, name string, scopes []tokenkeeper.Scope) (*httpapi.CreatedAPIKey, error) {
	key, rec, err := tokenkeeper.NewAPIKey(name, scopes, time.Now())
	if err != nil {
		return nil, &usageError{cmd: s.f.fs.Name(), err: errors.New(tokenkeeper.ErrorMessage(err))}
	}
	st, err := openStore(ctx, s, createStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.CreateAPIKey(ctx, rec); err != nil {
		return nil, fmt.Errorf("create API key: %w", err)
	}
	err = audit(ctx, st, "apikey.create", "", apiKeyDetail(rec))
	return &httpapi.CreatedAPIKey{Key: key, APIKey: *httpapi.FromAPIKey(rec)}, err
}

// apiKeyDetail is the audit detail of a key: never the key, nor its hash.
func apiKeyDetail(k *tokenkeeper.APIKey) string {
	return fmt.Sprintf("id=%s name=%q scopes=%s", k.ID, k.Name, joinScopes(k.Scopes))
}

const apikeysListUsage = `Usage: tokenkeeper apikeys list [--json]

Lists every API key, revoked ones included, oldest first: never a key, nor its hash.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runAPIKeysList(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper apikeys list", groupStore)
	r := addRemoteFlags(s)
	var asJSON bool
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	if _, err := parseSettings(s, apikeysListUsage, stdout, args); err != nil {
		return err
	}
	list := []*httpapi.APIKey{}
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if list, err = c.ListAPIKeys(ctx); err != nil {
			return fmt.Errorf("list API keys: %w", err)
		}
	} else {
		st, err := openStore(ctx, s, existingStore)
		if err != nil {
			return err
		}
		defer st.Close()
		keys, err := st.ListAPIKeys(ctx)
		if err != nil {
			return fmt.Errorf("list API keys: %w", err)
		}
		for _, k := range keys {
			list = append(list, httpapi.FromAPIKey(k))
		}
	}
	if asJSON {
		return writeJSON(stdout, httpapi.APIKeyList{APIKeys: list})
	}
	t := newTable(stdout, "ID", "NAME", "SCOPES", "CREATED", "REVOKED")
	for _, k := range list {
		t.row(string(k.ID), k.Name, joinScopes(k.Scopes), stamp(k.CreatedAt), stamp(deref(k.RevokedAt)))
	}
	return t.flush()
}

const apikeysRevokeUsage = `Usage: tokenkeeper apikeys revoke ID

Revokes the API key ID (as "apikeys list" shows it; not the key itself). Services refuse
it from their next request on. Revoking a revoked key is not an error. Exits 4 if there
is no such key.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runAPIKeysRevoke(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper apikeys revoke", groupStore)
	r := addRemoteFlags(s)
	pos, err := parseSettings(s, apikeysRevokeUsage, stdout, args, "ID")
	if err != nil {
		return err
	}
	id := tokenkeeper.APIKeyID(pos[0])
	if strings.HasPrefix(pos[0], "tk_") {
		// Someone pasted the key itself: say so without echoing it.
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("that is an API key, not its id; give the id that \"apikeys list\" shows (ak...)")}
	}
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if _, err := c.RevokeAPIKey(ctx, id); err != nil {
			return notFound(fmt.Errorf("revoke API key %s: %w", id, err))
		}
	} else {
		st, err := openStore(ctx, s, existingStore)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.RevokeAPIKey(ctx, id, time.Now()); err != nil {
			return notFound(fmt.Errorf("revoke API key %s: %w", id, err))
		}
		if err := audit(ctx, st, "apikey.revoke", "", "id="+string(id)); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stdout, "API key %s revoked\n", id)
	return err
}
