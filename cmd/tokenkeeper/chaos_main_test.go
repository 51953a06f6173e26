package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// The chaos tests need replicas that are real processes (SIGKILL, SIGSTOP). Rather than
// build the command, a test starts this test binary again with chaosChildEnv set: TestMain
// then runs Main with the arguments it was given, as main does, and exits. The binary is
// the one under test, with -race if the run has it.
const (
	chaosChildEnv = "TOKENKEEPER_CHAOS_CHILD" // "serve": run Main(os.Args[1:])
	// The lease owner of the replica (serve makes one of its own), so that the test can
	// tell the replicas' leases apart in the database.
	chaosOwnerEnv = "TOKENKEEPER_CHAOS_OWNER"
)

func TestMain(m *testing.M) {
	if os.Getenv(chaosChildEnv) != "" {
		os.Exit(chaosChild())
	}
	os.Exit(m.Run())
}

// chaosChild is main for a replica process: Main on a SIGTERM-cancelled context, with
// the keeper's owner taken from the environment.
func chaosChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	owner := os.Getenv(chaosOwnerEnv)
	ctx = withSeams(ctx, testSeams{keeper: func(c *keeper.Config) { c.Owner = owner }})
	return Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
