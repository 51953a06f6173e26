package keeper_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ExampleKeeper_Prune removes what is left of connections that were
// disconnected more than 30 days ago. Run does this by itself when
// Config.Retention is set.
func ExampleKeeper_Prune() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	ctx := context.Background()
	x.connect(k, "acme")
	x.connect(k, "globex")
	if err := k.Disconnect(ctx, "acme", "the customer left"); err != nil {
		log.Fatal(err)
	}
	if _, err := x.srv.Advance(31 * 24 * time.Hour); err != nil { // the keeper's clock, in this example
		log.Fatal(err)
	}

	wouldGo, err := k.Prune(ctx, 30*24*time.Hour, true) // a dry run first
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("would remove:", len(wouldGo), wouldGo[0].ID)
	removed, err := k.Prune(ctx, 30*24*time.Hour, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed:", len(removed), removed[0].ID)
	// Output:
	// would remove: 1 acme
	// removed: 1 acme
}

// ExampleKeeper_Uninstall revokes a connection's grant at the provider
// before disconnecting it, as "delete with revoke" in the HTTP API does.
func ExampleKeeper_Uninstall() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	ctx := context.Background()
	x.connect(k, "acme")

	if err := k.Uninstall(ctx, "acme"); err != nil {
		log.Fatal(err) // the grant may still be alive: do not forget the connection yet
	}
	if err := k.Disconnect(ctx, "acme", "uninstalled"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("installation:", x.srv.Report().Authorisations[0].State)
	// Output:
	// installation: revoked
}

// ExampleConfig_registerer exports the keeper's metrics on a registry of
// your own (serve it with promhttp.HandlerFor).
func ExampleConfig_registerer() {
	x := newExampleSetup()
	defer x.close()
	reg := prometheus.NewRegistry()
	cfg := x.config()
	cfg.Registerer = reg
	k := x.keeper(cfg)
	x.connect(k, "acme")

	n, err := testutil.GatherAndCount(reg, "tokenkeeper_connections")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("connection states exported:", n)
	// Output:
	// connection states exported: 3
}
