package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// The chaos tests need replicas that are real processes (SIGKILL, SIGSTOP). Rather than
// build the command, a test starts this test binary again with chaosChildEnv set: TestMain
// then runs Main with the arguments it was given, as main does, and exits. The binary is
// the one under test, with -race if the run has it.
const (
	chaosChildEnv = "TOKENKEEPER_CHAOS_CHILD" // "serve": run Main(os.Args[1:])
	// The keeper settings serve has no flag for: the owner name, durations in Go syntax,
	// and the refresh rate limit.
	chaosOwnerEnv          = "TOKENKEEPER_CHAOS_OWNER"
	chaosRefreshTimeoutEnv = "TOKENKEEPER_CHAOS_REFRESH_TIMEOUT"
	chaosLeaseTTLEnv       = "TOKENKEEPER_CHAOS_LEASE_TTL"
	chaosRefreshRateEnv    = "TOKENKEEPER_CHAOS_REFRESH_RATE" // refreshes per second, and the burst
)

func TestMain(m *testing.M) {
	if os.Getenv(chaosChildEnv) != "" {
		os.Exit(chaosChild())
	}
	os.Exit(m.Run())
}

// chaosChild is main for a replica process: Main on SIGTERM-cancelled context, with the
// keeper's owner, refresh timeout and lease TTL taken from the environment.
func chaosChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dur := func(env string) time.Duration {
		v := os.Getenv(env)
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", env, err)
			os.Exit(exitUsage)
		}
		return d
	}
	owner, timeout, ttl := os.Getenv(chaosOwnerEnv), dur(chaosRefreshTimeoutEnv), dur(chaosLeaseTTLEnv)
	rate, _ := strconv.Atoi(os.Getenv(chaosRefreshRateEnv))
	ctx = withSeams(ctx, testSeams{keeper: func(c *keeper.Config) {
		c.Owner, c.RefreshTimeout, c.LeaseTTL = owner, timeout, ttl
		c.RefreshRate, c.RefreshBurst = float64(rate), rate
	}})
	return Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
