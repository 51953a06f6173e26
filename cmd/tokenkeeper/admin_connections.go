package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

const connectionsUsage = `Usage: tokenkeeper connections <command> [flags]

Commands:
  list               list connections: ID, state, subject, token expiry, refreshes, last error
  show ID            show one connection
  delete ID          disconnect: wipe the tokens and keep the record; --revoke first
                     revokes the grant at the provider
  refresh ID         refresh the token now; prints the new expiry, never the token
  prune              remove connections disconnected or waiting for a reconnect for
                     longer than --retention; --dry-run lists them only

Each works on the store (--store) directly, or with --server URL through a running
service's HTTP API, with the API key from $TOKENKEEPER_API_KEY or --api-key-file.
"tokenkeeper connections <command> -h" lists a command's flags. --json prints the objects
of the HTTP API.

Exit codes: 0 success, 1 runtime error, 2 usage error, 4 the connection does not exist
(show, delete, refresh).
`

// runConnections runs `tokenkeeper connections`.
func runConnections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "tokenkeeper connections", connectionsUsage, []subcommand{
		{"list", runConnectionsList},
		{"show", runConnectionsShow},
		{"delete", runConnectionsDelete},
		{"refresh", runConnectionsRefresh},
		{"prune", runConnectionsPrune},
	}, args, stdout, stderr)
}

const connectionsListUsage = `Usage: tokenkeeper connections list [--state S] [--prefix P] [--limit N] [--json]

Lists connections in id order, as a table (times relative to now) or, with --json, as
{"connections": [...]}, the HTTP API's connection objects as GET /v1/connections gives
them.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runConnectionsList(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper connections list", groupStore)
	r := addRemoteFlags(s)
	var state, prefix string
	var limit uint64
	var asJSON bool
	s.f.choiceVar(&state, "state", "", []string{string(tokenkeeper.StateActive),
		string(tokenkeeper.StateReconnectRequired), string(tokenkeeper.StateDisconnected)},
		"list only connections in `STATE`: active, reconnect_required or disconnected")
	s.f.stringVar(&prefix, "prefix", "", "list only connections whose id starts with `PREFIX`")
	s.f.uint64Var(&limit, "limit", 100, "list at most `N` connections; 0 lists all")
	s.f.cliOnly("state", "prefix", "limit")
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	if _, err := parseSettings(s, connectionsListUsage, stdout, args); err != nil {
		return err
	}
	filter := tokenkeeper.ConnectionFilter{State: tokenkeeper.State(state), IDPrefix: prefix}
	list := []*httpapi.Connection{}
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if list, err = remoteListConnections(ctx, c, filter, int(limit)); err != nil {
			return err
		}
	} else {
		st, err := openStore(ctx, s, existingStore)
		if err != nil {
			return err
		}
		defer st.Close()
		recs, err := listRecords(ctx, st, filter, int(limit))
		if err != nil {
			return fmt.Errorf("list connections: %w", err)
		}
		for _, rec := range recs {
			list = append(list, httpapi.FromRecord(rec))
		}
	}
	if asJSON {
		return writeJSON(stdout, httpapi.ConnectionList{Connections: list})
	}
	return printConnections(stdout, list, time.Now())
}

// listRecords pages through the store's connections that pass filter, up to limit (0:
// all).
func listRecords(ctx context.Context, st tokenkeeper.Store, filter tokenkeeper.ConnectionFilter, limit int) ([]*tokenkeeper.Record, error) {
	const page = 1000 // what stores cap a page at
	var out []*tokenkeeper.Record
	for {
		filter.Limit = page
		if limit > 0 {
			filter.Limit = min(page, limit-len(out))
		}
		recs, err := st.ListConnections(ctx, filter)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		if len(recs) < filter.Limit || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		filter.After = recs[len(recs)-1].ID
	}
}

// connectionCommand is the command line of a command on one connection.
type connectionCommand struct {
	s      *settings
	r      *remoteFlags
	asJSON bool
	id     tokenkeeper.ConnectionID
}

// parseConnectionCommand defines the flags of a command on one connection (the groups,
// the remote flags, --json, and those that more adds), parses args, and checks the ID.
func parseConnectionCommand(name string, groups group, usage string, stdout io.Writer, args []string, more func(*settings)) (*connectionCommand, error) {
	c := &connectionCommand{s: newSettings(name, groups)}
	c.r = addRemoteFlags(c.s)
	c.s.f.boolVar(&c.asJSON, "json", false, "print the connection as JSON")
	if more != nil {
		more(c.s)
	}
	pos, err := parseSettings(c.s, usage, stdout, args, "ID")
	if err != nil {
		return nil, err
	}
	c.id, err = parseConnectionID(c.s, pos[0])
	return c, err
}

const connectionsShowUsage = `Usage: tokenkeeper connections show ID [--json]

Shows one connection, without its tokens. Exits 4 if there is no such connection.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runConnectionsShow(ctx context.Context, args []string, stdout, _ io.Writer) error {
	cmd, err := parseConnectionCommand("tokenkeeper connections show", groupStore, connectionsShowUsage, stdout, args, nil)
	if err != nil {
		return err
	}
	s, id := cmd.s, cmd.id
	var v *httpapi.Connection
	if c, err := cmd.r.client(s); err != nil {
		return err
	} else if c != nil {
		if v, err = c.GetConnection(ctx, id); err != nil {
			return notFound(fmt.Errorf("show connection %s: %w", id, err))
		}
	} else {
		st, err := openStore(ctx, s, existingStore)
		if err != nil {
			return err
		}
		defer st.Close()
		rec, err := st.GetConnection(ctx, id)
		if err != nil {
			return notFound(fmt.Errorf("show connection %s: %w", id, err))
		}
		v = httpapi.FromRecord(rec)
	}
	if cmd.asJSON {
		return writeJSON(stdout, v)
	}
	return printConnection(stdout, v, time.Now())
}

const connectionsDeleteUsage = `Usage: tokenkeeper connections delete ID [--revoke] [--json]

Disconnects the connection: its tokens are wiped, it is marked disconnected, and the
record stays (for the audit trail and a later reconnect; retention removes it later).
With --revoke, the grant is first revoked at the provider (Pleo's DELETE
/v1/installations/me), which needs the key file and the client credentials; if that
fails, nothing is changed. Exits 4 if there is no such connection.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runConnectionsDelete(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var revoke bool
	cmd, err := parseConnectionCommand("tokenkeeper connections delete", groupStore|groupKeys|groupProvider,
		connectionsDeleteUsage, stdout, args, func(s *settings) {
			s.f.boolVar(&revoke, "revoke", false, "first revoke the grant at the provider (uninstall)")
			s.f.cliOnly("revoke")
		})
	if err != nil {
		return err
	}
	s, id := cmd.s, cmd.id
	var v *httpapi.Connection
	if c, err := cmd.r.client(s); err != nil {
		return err
	} else if c != nil {
		if v, err = c.DeleteConnection(ctx, id, revoke); err != nil {
			return notFound(fmt.Errorf("delete connection %s: %w", id, err))
		}
	} else if v, err = localDelete(ctx, s, id, revoke); err != nil {
		return err
	}
	if cmd.asJSON {
		return writeJSON(stdout, v)
	}
	how := "disconnected"
	if revoke {
		how = "revoked at the provider and disconnected"
	}
	_, err = fmt.Fprintf(stdout, "connection %s %s: its tokens are wiped; the record is kept\n", id, how)
	return err
}

func localDelete(ctx context.Context, s *settings, id tokenkeeper.ConnectionID, revoke bool) (*httpapi.Connection, error) {
	var sealer tokenkeeper.Sealer = noKeys{}
	if revoke {
		if err := s.requireClient(); err != nil {
			return nil, err
		}
		keys, err := loadKeys(s)
		if err != nil {
			return nil, err
		}
		sealer = keys
	}
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var k *keeper.Keeper
	if revoke {
		k, err = newKeeper(s, st, sealer, newLogger(io.Discard, "text", "info"), keeper.Config{NoChangeFeed: true})
	} else {
		k, err = offlineKeeper(st, sealer)
	}
	if err != nil {
		return nil, err
	}
	defer k.Close()
	// The reasons and the audit entry are those of the HTTP API's DELETE, with the CLI's
	// actor.
	reason, detail := "disconnected by "+cliActor(), "revoke=false"
	if revoke {
		if err := k.Uninstall(ctx, id); err != nil {
			return nil, notFound(fmt.Errorf("revoke the grant of connection %s (nothing was changed): %w", id, err))
		}
		reason, detail = "revoked and disconnected by "+cliActor(), "revoke=true"
	}
	if err := k.Disconnect(ctx, id, reason); err != nil {
		return nil, notFound(fmt.Errorf("disconnect connection %s: %w", id, err))
	}
	if err := audit(ctx, st, "connection.delete", id, detail); err != nil {
		return nil, err
	}
	rec, err := st.GetConnection(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read connection %s: %w", id, err)
	}
	return httpapi.FromRecord(rec), nil
}

const connectionsRefreshUsage = `Usage: tokenkeeper connections refresh ID [--json]

Refreshes the connection's token now, whatever its expiry (an operator's forced refresh:
it still honours a cooldown after a failed refresh), and prints when the new access
token expires; never the token. --json prints the connection. It needs the key file and
the client credentials. Exits 4 if there is no such connection.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runConnectionsRefresh(ctx context.Context, args []string, stdout, _ io.Writer) error {
	cmd, err := parseConnectionCommand("tokenkeeper connections refresh", groupStore|groupKeys|groupProvider,
		connectionsRefreshUsage, stdout, args, nil)
	if err != nil {
		return err
	}
	s, id := cmd.s, cmd.id
	var v *httpapi.Connection
	if c, err := cmd.r.client(s); err != nil {
		return err
	} else if c != nil {
		if v, err = c.RefreshConnection(ctx, id); err != nil {
			return notFound(fmt.Errorf("refresh connection %s: %w", id, err))
		}
	} else if v, err = localRefresh(ctx, s, id); err != nil {
		return err
	}
	if cmd.asJSON {
		return writeJSON(stdout, v)
	}
	exp := deref(v.AccessTokenExpiresAt)
	_, err = fmt.Fprintf(stdout, "connection %s refreshed: the new access token expires at %s (%s)\n",
		id, stamp(exp), relTime(exp, time.Now()))
	return err
}

func localRefresh(ctx context.Context, s *settings, id tokenkeeper.ConnectionID) (*httpapi.Connection, error) {
	if err := s.requireClient(); err != nil {
		return nil, err
	}
	keys, err := loadKeys(s)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	k, err := newKeeper(s, st, keys, newLogger(io.Discard, "text", "info"), keeper.Config{NoChangeFeed: true})
	if err != nil {
		return nil, err
	}
	defer k.Close()
	if _, err := k.Refresh(ctx, id); err != nil {
		return nil, notFound(fmt.Errorf("refresh connection %s: %w", id, err))
	}
	if err := audit(ctx, st, "connection.refresh", id, ""); err != nil {
		return nil, err
	}
	rec, err := st.GetConnection(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read connection %s: %w", id, err)
	}
	return httpapi.FromRecord(rec), nil
}

const connectionsPruneUsage = `Usage: tokenkeeper connections prune [--dry-run] [--retention 720h] [--json]

Removes, for good, the connections that have been disconnected or waiting for a
reconnect for longer than --retention (active ones never), and lists them; with
--dry-run it only lists what it would remove. serve does this by itself every
--prune-interval. On the store, each removal is logged on stderr (as serve logs it:
"prune: removed connection" and the event "connection pruned") and audited as
connection.prune. With --server, the service prunes with its own retention, and
--retention on the command line is refused.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runConnectionsPrune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper connections prune", groupStore)
	r := addRemoteFlags(s)
	var dryRun, asJSON bool
	var retention time.Duration
	s.f.boolVar(&dryRun, "dry-run", false, "list what would be removed; remove nothing")
	s.f.cliOnly("dry-run")
	s.f.durationVar(&retention, "retention", defaultRetention,
		"remove connections disconnected or waiting for a reconnect for longer than this `DURATION`")
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	if _, err := parseSettings(s, connectionsPruneUsage, stdout, args); err != nil {
		return err
	}
	var res *httpapi.PruneResult
	var err error
	if c, cerr := r.client(s); cerr != nil {
		return cerr
	} else if c != nil {
		if settingOrigin(s.f, "retention") == "flag" {
			return errRemoteOnly(s, "retention", "the service prunes with its own --retention")
		}
		res, err = c.Prune(ctx, dryRun)
	} else {
		if retention <= 0 {
			return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: must be positive", s.f.source("retention"))}
		}
		res, err = localPrune(ctx, s, retention, dryRun, stderr)
	}
	if res == nil {
		return err
	}
	// What was removed before a failure is printed too, then the failure.
	if asJSON {
		return errors.Join(writeJSON(stdout, res), err)
	}
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(stdout, "%s %d connections\n", verb, len(res.Pruned))
	if len(res.Pruned) > 0 {
		err = errors.Join(printConnections(stdout, res.Pruned, time.Now()), err)
	}
	return err
}

// localPrune prunes with the keeper's rules and audits each removal, as POST
// /v1/connections/prune does. As in serve, the keeper logs each removal (and, with
// dryRun, each connection it would remove) on stderr, and emits an EventPruned that is
// logged there too, where stdout keeps the result alone. On a failure it returns what
// was removed before it too.
func localPrune(ctx context.Context, s *settings, retention time.Duration, dryRun bool, stderr io.Writer) (*httpapi.PruneResult, error) {
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	log := newLogger(stderr, "text", "info")
	k, err := offlineKeeper(st, noKeys{}, func(c *keeper.Config) {
		c.Logger = log
		c.Events = eventLogger{log: log}
	})
	if err != nil {
		return nil, err
	}
	defer k.Close()
	removed, err := k.Prune(ctx, retention, dryRun)
	if err != nil {
		err = fmt.Errorf("prune (stopped after %d): %w", len(removed), err)
	}
	res := &httpapi.PruneResult{DryRun: dryRun, Pruned: []*httpapi.Connection{}}
	for _, c := range removed {
		res.Pruned = append(res.Pruned, httpapi.FromConnection(c, time.Time{}))
		if !dryRun {
			err = errors.Join(err, audit(ctx, st, "connection.prune", c.ID, "retention="+retention.String()))
		}
	}
	return res, err
}
