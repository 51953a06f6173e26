package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

const auditUsage = `Usage: tokenkeeper audit list [--connection ID] [--limit N] [--json]

Lists the audit trail, newest first: who (cli:<user> at the command line, apikey:<id>
through the HTTP API) did what (connection.delete, connection.refresh, connection.prune,
connect_session.create, apikey.create, apikey.revoke, keys.rotate), to which connection,
and when. With --json, {"entries": [...]} as GET /v1/audit returns it.

Flags, each with the environment variable that sets it when the flag is absent:
`

// runAudit runs `tokenkeeper audit`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		return runAuditList(ctx, []string{"-h"}, stdout, stderr)
	}
	return runGroup(ctx, "tokenkeeper audit", auditUsage, []subcommand{
		{"list", runAuditList},
	}, args, stdout, stderr)
}

func runAuditList(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper audit list", groupStore)
	r := addRemoteFlags(s)
	var conn string
	var limit uint64
	var asJSON bool
	s.f.stringVar(&conn, "connection", "", "list only the entries about the connection `ID`")
	s.f.uint64Var(&limit, "limit", 100, "list at most `N` entries; 0 lists all")
	s.f.cliOnly("limit")
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	if _, err := parseSettings(s, auditUsage, stdout, args); err != nil {
		return err
	}
	var id tokenkeeper.ConnectionID
	if conn != "" {
		var err error
		if id, err = parseConnectionID(s, conn); err != nil {
			return err
		}
	}
	var entries []*httpapi.AuditEntry
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if entries, err = remoteListAudit(ctx, c, id, int(limit)); err != nil {
			return err
		}
	} else if entries, err = localListAudit(ctx, s, id, int(limit)); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, httpapi.AuditList{Entries: entries})
	}
	t := newTable(stdout, "ID", "TIME", "ACTOR", "ACTION", "CONNECTION", "DETAIL")
	for _, e := range entries {
		t.row(fmt.Sprint(e.ID), stamp(e.Time), e.Actor, e.Action, string(e.ConnectionID), e.Detail)
	}
	return t.flush()
}

// localListAudit pages through the store's audit trail, newest first, up to limit (0:
// all).
func localListAudit(ctx context.Context, s *settings, id tokenkeeper.ConnectionID, limit int) ([]*httpapi.AuditEntry, error) {
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	const page = 1000 // what stores cap a page at
	out := []*httpapi.AuditEntry{}
	f := tokenkeeper.AuditFilter{ConnectionID: id}
	for {
		f.Limit = page
		if limit > 0 {
			f.Limit = min(page, limit-len(out))
		}
		list, err := st.ListAudit(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list the audit trail: %w", err)
		}
		for _, e := range list {
			out = append(out, &httpapi.AuditEntry{ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor,
				Action: e.Action, ConnectionID: e.ConnectionID, Detail: e.Detail})
		}
		if len(list) < f.Limit || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		f.Before = list[len(list)-1].ID
	}
}
