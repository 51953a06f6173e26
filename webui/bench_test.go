package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// BenchmarkServer_ConnectionsPage: one page of the connections table, deep
// into 100,000 connections, with and without a filter. Keyset pages cost
// the same at any depth.
func BenchmarkServer_ConnectionsPage(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const n = 100_000
	for i := range n {
		st := tokenkeeper.StateActive
		if i%10 == 0 {
			st = tokenkeeper.StateReconnectRequired
		}
		rec := &tokenkeeper.Record{Connection: tokenkeeper.Connection{ID: tokenkeeper.ConnectionID(fmt.Sprintf("c-%06d", i)),
			Provider: "custom", State: st, Generation: 1, CreatedAt: now, UpdatedAt: now, Subject: "urn:pleo:company:0f6c1f0e-6a1b-4c1e-9d1e-2a6b1c0e9f00"}}
		if err := e.store.CreateConnection(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	br := e.browserFor(b)
	if r := br.login(e.admin); r.status != http.StatusSeeOther {
		b.Fatal(r.status)
	}
	for _, path := range []string{"/ui/connections", "/ui/connections?after=c-090000", "/ui/connections?state=reconnect_required&after=c-090000",
		"/ui/connections?q=c-0999", "/ui/"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				if r := br.get(path); r.status != http.StatusOK {
					b.Fatal(r.status)
				}
			}
		})
	}
}
