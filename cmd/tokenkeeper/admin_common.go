package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// exitNotFound is the exit code of an admin command whose connection or API key does
// not exist (show, delete, refresh, revoke). It is part of the contract, like the others.
const exitNotFound = 4

// notFoundError is the failure of an admin command whose subject does not exist: exit
// code 4. Only the call that looks the subject up wraps its error in one, so that a
// missing key file (also "not found" to package seal) is still a runtime error.
type notFoundError struct{ err error }

func (e *notFoundError) Error() string { return e.err.Error() }
func (e *notFoundError) Unwrap() error { return e.err }

// notFound wraps err in a notFoundError if its code is CodeNotFound.
func notFound(err error) error {
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound {
		return &notFoundError{err: err}
	}
	return err
}

// adminExit is exitCode for the admin commands: it adds exit code 4 for a subject that
// does not exist.
func adminExit(err error, stderr io.Writer) int {
	var nf *notFoundError
	if errors.As(err, &nf) {
		fmt.Fprintf(stderr, "tokenkeeper: %v\n", err)
		return exitNotFound
	}
	return exitCode(err, stderr)
}

// flagsHeader ends the usage text of a command, before printFlags lists its flags.
const flagsHeader = "Flags, each with the environment variable that sets it when the flag is absent:\n"

// subcommand is one command of a group such as `tokenkeeper connections`.
type subcommand struct {
	name string
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// runGroup runs the subcommand args[0] of the group cmd, or prints the group's usage for
// -h (exit 0) or for a missing or unknown subcommand (a usage error).
func runGroup(ctx context.Context, cmd, usage string, subs []subcommand, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		// A group's usage may be its one command's, which lists flags after it.
		fmt.Fprint(stderr, strings.TrimSuffix(usage, flagsHeader))
		return &usageError{cmd: cmd, err: errors.New("missing a command")}
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:], stdout, stderr)
		}
	}
	return &usageError{cmd: cmd, err: fmt.Errorf("unknown command %q", args[0])}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// parseSettings is settings.parse that prints the usage and the flags for -h.
func parseSettings(s *settings, usage string, stdout io.Writer, args []string, names ...string) ([]string, error) {
	pos, err := s.parse(args, names...)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		s.f.printFlags(stdout)
	}
	return pos, err
}

// audit appends an entry by the person at the command line. Its failure fails the
// command: the action is done, but an operator must know that its trail is missing.
func audit(ctx context.Context, st tokenkeeper.AuditLog, action string, id tokenkeeper.ConnectionID, detail string) error {
	e := &tokenkeeper.AuditEntry{Time: time.Now(), Actor: cliActor(), Action: action, ConnectionID: id, Detail: detail}
	if err := st.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("%s done, but its audit entry could not be written: %w", action, err)
	}
	return nil
}

// offlineClientID stands in for the OAuth client of a keeper that never calls the
// provider (see offlineKeeper).
const offlineClientID = "tokenkeeper-cli-offline"

// offlineKeeper returns a keeper for the work on the store alone that must still follow
// the keeper's rules (compare-and-swap writes, leases): disconnecting, pruning and
// re-sealing. None of them calls the provider, so they need no client credentials, and
// the keeper gets a stand-in client id; sealer may be noKeys where nothing is opened or
// sealed. Its logs are discarded and its events dropped unless an option sets Logger or
// Events. The caller closes it.
func offlineKeeper(st tokenkeeper.Store, sealer tokenkeeper.Sealer, opts ...func(*keeper.Config)) (*keeper.Keeper, error) {
	cfg := keeper.Config{
		Store:    st,
		Sealer:   sealer,
		Provider: tokenkeeper.PleoProvider(),
		ClientID: offlineClientID,
		Logger:   slog.New(slog.DiscardHandler),
		// A command runs for a moment and caches nothing worth keeping coherent.
		NoChangeFeed: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return keeper.New(cfg)
}

// noKeys is the Sealer of a command run without --key-file: it seals and opens nothing.
type noKeys struct{}

var _ tokenkeeper.Sealer = noKeys{}

func (noKeys) Seal([]byte, []byte) (tokenkeeper.Sealed, error) {
	return tokenkeeper.Sealed{}, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "this command needs --key-file to seal tokens")
}

func (noKeys) Open(tokenkeeper.Sealed, []byte) ([]byte, error) {
	return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "this command needs --key-file to open tokens")
}

func (noKeys) PrimaryKeyID() string { return "" }

// parseConnectionID checks a connection id given on the command line: a usage error if
// it cannot be one.
func parseConnectionID(s *settings, arg string) (tokenkeeper.ConnectionID, error) {
	id := tokenkeeper.ConnectionID(arg)
	if err := id.Validate(); err != nil {
		return "", &usageError{cmd: s.f.fs.Name(), err: errors.New(tokenkeeper.ErrorMessage(err))}
	}
	return id, nil
}

// joinScopes writes API key scopes as "admin,tokens".
func joinScopes(scopes []tokenkeeper.Scope) string {
	s := make([]string, len(scopes))
	for i, sc := range scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ",")
}
