package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

const connectURLUsage = `Usage: tokenkeeper connect-url ID [--return-to URL] [--ttl D] [--json]

Prints a single-use connect link, <public-url>/connect/<token>, for the connection ID:
whoever opens it (before it expires) is sent to the provider to consent, and the
connection is created, or reconnected if it exists. Hand it to the user, and keep it out
of logs and tickets: it is a credential. The link is printed alone on stdout, with its
expiry on stderr; with --json, as {"url", "expires_at", "connection_id"}, the answer of
POST /v1/connect-sessions.

Working on the store, it needs --public-url (the running service's) and the OAuth client
credentials, and --return-to must lie under an --allowed-return-url, as for serve; with
--server, the service's own settings apply.

Flags, each with the environment variable that sets it when the flag is absent:
`

// runConnectURL runs `tokenkeeper connect-url`.
func runConnectURL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper connect-url", groupStore|groupProvider)
	r := addRemoteFlags(s)
	var returnTo string
	var ttl time.Duration
	var asJSON bool
	s.f.stringVar(&returnTo, "return-to", "",
		"send the user's browser to `URL` when the flow ends: a path on the service's host, or under an --allowed-return-url")
	s.f.durationVar(&ttl, "ttl", 0, "the link stays usable for this `DURATION`, at most 168h; 0 means --connect-link-ttl")
	s.f.cliOnly("return-to", "ttl")
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of the link alone")
	pos, err := parseSettings(s, connectURLUsage, stdout, args, "ID")
	if err != nil {
		return err
	}
	id, err := parseConnectionID(s, pos[0])
	if err != nil {
		return err
	}
	if ttl < 0 || ttl > connect.MaxLinkTTL || ttl%time.Second != 0 {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %s is not a whole number of seconds up to %s (0 means --connect-link-ttl)",
			s.f.source("ttl"), ttl, shortDuration(connect.MaxLinkTTL))}
	}
	var link *httpapi.ConnectSession
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		link, err = c.CreateConnectSession(ctx, httpapi.ConnectSessionRequest{ConnectionID: id, ReturnTo: returnTo,
			ExpiresIn: int64(ttl / time.Second)})
		if err != nil {
			return fmt.Errorf("make a connect link for %s: %w", id, err)
		}
	} else if link, err = localConnectURL(ctx, s, id, returnTo, ttl); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, link)
	}
	if _, err := fmt.Fprintln(stdout, link.URL); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Single-use connect link for %s; it expires at %s (%s).\n",
		link.ConnectionID, stamp(link.ExpiresAt), relTime(link.ExpiresAt, time.Now()))
	return nil
}

// localConnectURL makes the link with the connect flow on the store, as POST
// /v1/connect-sessions does, and audits it.
func localConnectURL(ctx context.Context, s *settings, id tokenkeeper.ConnectionID, returnTo string, ttl time.Duration) (*httpapi.ConnectSession, error) {
	if err := s.requirePublicURL(); err != nil {
		return nil, err
	}
	if err := s.requireClient(); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = s.linkTTL
	}
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	// A link is stored as a hash and sealed nothing, so the flow needs no keys; nor does
	// it reach a keeper before the link is opened, by the service.
	k, err := offlineKeeper(st, noKeys{})
	if err != nil {
		return nil, err
	}
	defer k.Close()
	flow, err := newFlow(s, st, noKeys{}, k, newLogger(io.Discard, "text", "info"))
	if err != nil {
		return nil, err
	}
	link, err := flow.NewLink(ctx, connect.LinkRequest{ConnectionID: id, ReturnURL: returnTo, TTL: ttl})
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeInvalid {
		return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %s", s.f.source("return-to"), tokenkeeper.ErrorMessage(err))}
	}
	if err != nil {
		return nil, fmt.Errorf("make a connect link for %s: %w", id, err)
	}
	if err := audit(ctx, st, "connect_session.create", id, "expires_at="+link.ExpiresAt.UTC().Format(time.RFC3339)); err != nil {
		return nil, err
	}
	return &httpapi.ConnectSession{
		URL:          strings.TrimSuffix(s.public.String(), "/") + "/connect/" + url.PathEscape(link.Token.Reveal()),
		ExpiresAt:    link.ExpiresAt.UTC(),
		ConnectionID: link.ConnectionID,
	}, nil
}
