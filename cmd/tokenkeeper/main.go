// Command tokenkeeper is tokenkeeper's one binary. Its subcommands are listed by
// `tokenkeeper help`.
//
// Configuration lives here and only here: every flag of a subcommand can also be set by an
// environment variable (TOKENKEEPER_EMULATOR_* for the emulator), and the library packages
// take plain structs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// Exit codes. They are part of the command's contract: scripts test them.
const (
	exitOK         = 0
	exitError      = 1 // a runtime error
	exitUsage      = 2 // a mistake on the command line or in the environment
	exitViolations = 3 // `emulator report`: the client broke rules it is to blame for
)

const usage = `tokenkeeper holds OAuth 2.0 tokens for Pleo integrations.

Usage:
  tokenkeeper <command> [flags]

Commands:
  dev               run everything on this machine: the emulator, the service on SQLite in
                    ./.tokenkeeper-dev, a dev key and a demo client; prints what to open
  serve             run the token service: the HTTP API, the proxy, the connect flow, the
                    refresh scheduler, retention and metrics
  connections       list, show, delete (disconnect), refresh and prune connections
  connect-url       print a single-use link that connects (or reconnects) a connection
  apikeys           create, list and revoke API keys for the HTTP API
  audit list        print the audit trail of administrative actions
  webhooks          add, list, delete and test webhook endpoints; their delivery log
  keys              generate a keyset; rotate the key that seals tokens, re-sealing them
  migrate           migrate the store to this build's schema
  config check      check serve's settings and print them with where each came from
  emulator          run the Pleo emulator: a local Pleo authorisation server, API and
                    control plane, for development and CI
  emulator report   print the ledger of a running emulator: what happened, and which
                    rules its clients broke
  version           print the version, the Go version and the VCS revision
  help              print this help; "tokenkeeper help <command>" or
                    "tokenkeeper <command> -h" for a command's flags

Every flag can also be set by an environment variable; "-h" on a command lists them.
The admin commands (connections, connect-url, apikeys, audit) work on the store (--store)
directly, or with --server URL through a running service's HTTP API, with the API key
from $TOKENKEEPER_API_KEY or --api-key-file.

Exit codes:
  0  success
  1  runtime error
  2  usage error: a bad command, flag or environment variable
  3  emulator report: the client broke rules (those after a lost response excepted)
  4  connections show, delete, refresh; apikeys revoke: no such connection or key
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the command line args (without the program name) and returns the exit code.
// Cancelling ctx stops a long-running command, which then returns 0. Main reads the
// process environment; it writes results to stdout and messages and logs to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr)
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "connections":
		return adminExit(runConnections(ctx, args[1:], stdout, stderr), stderr)
	case "connect-url":
		return adminExit(runConnectURL(ctx, args[1:], stdout, stderr), stderr)
	case "apikeys":
		return adminExit(runAPIKeys(ctx, args[1:], stdout, stderr), stderr)
	case "audit":
		err = runAudit(ctx, args[1:], stdout, stderr)
	case "webhooks":
		return adminExit(runWebhooks(ctx, args[1:], stdout, stderr), stderr)
	case "keys":
		err = runKeys(ctx, args[1:], stdout, stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr)
	case "config":
		err = runConfig(ctx, args[1:], stdout, stderr)
	case "emulator":
		err = runEmulator(ctx, args[1:], stdout, stderr)
	case "version":
		err = runVersion(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		return runHelp(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "tokenkeeper: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return exitCode(err, stderr)
}

// helpCommands are the commands "tokenkeeper help <command>" knows.
var helpCommands = []string{"serve", "dev", "connections", "connect-url", "apikeys", "audit", "webhooks", "keys", "migrate",
	"config", "emulator", "version"}

// runHelp prints the usage, or a command's usage.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage)
		return exitOK
	case slices.Contains(helpCommands, args[0]):
		return Main(ctx, slices.Concat(args, []string{"-h"}), stdout, stderr)
	default:
		fmt.Fprintf(stderr, "tokenkeeper: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// exitCode reports err on stderr and maps it to an exit code.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	var ve *violationsError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s -h' for usage.\n", ue.cmd, ue.err, ue.cmd)
		return exitUsage
	case errors.As(err, &ve):
		fmt.Fprintf(stderr, "tokenkeeper emulator report: %v\n", ve)
		return exitViolations
	default:
		fmt.Fprintf(stderr, "tokenkeeper: %v\n", err)
		return exitError
	}
}
