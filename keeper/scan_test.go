package keeper_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// secretSeen collects every secret value the test ever holds, and every
// text the keeper produced for people to read.
type secretSeen struct {
	mu     sync.Mutex
	tokens map[string]bool
	texts  []string // error strings, event reasons
}

func (s *secretSeen) token(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		s.tokens = make(map[string]bool)
	}
	s.tokens[v] = true
}

func (s *secretSeen) grant(g tokenkeeper.Grant) tokenkeeper.Grant {
	s.token(g.Tokens.AccessToken.Reveal())
	s.token(g.Tokens.RefreshToken.Reveal())
	return g
}

func (s *secretSeen) err(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.texts = append(s.texts, err.Error())
	// Every error in the chain, with its own text.
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		s.texts = append(s.texts, e.Error())
	}
}

// find returns where in data each secret, or token prefix, occurs.
func (s *secretSeen) find(data []byte, extra ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	probes := append([]string{"pat_", "prt_"}, extra...)
	for v := range s.tokens {
		probes = append(probes, v)
	}
	var found []string
	for _, p := range probes {
		if i := bytes.Index(data, []byte(p)); i >= 0 {
			what := p
			if len(what) > 4 {
				what = "a token " + what[:4] + "..." // never print a token
			}
			found = append(found, fmt.Sprintf("%q at byte %d", what, i))
		}
	}
	return found
}

// scan fails t for each secret, or token prefix, found in data.
func (s *secretSeen) scan(t *testing.T, where string, data []byte, extra ...string) {
	t.Helper()
	for _, f := range s.find(data, extra...) {
		t.Errorf("%s holds %s", where, f)
	}
}

// TestKeeper_NoSecretsAtRest runs a busy life (refreshes over several
// expiry cycles, API calls through the Transport, a 500, a forced refresh,
// an invalid_grant, a lost response, a reconnect, a disconnect) and then
// looks for any token, or the emulator's token prefixes, in the raw
// database, WAL and shared-memory files, in the logs, in event reasons and
// in error strings.
func TestKeeper_NoSecretsAtRest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var seen secretSeen
	ids := []tokenkeeper.ConnectionID{"alpha", "bravo", "charlie", "delta"}
	auth := map[tokenkeeper.ConnectionID]string{}
	for _, id := range ids {
		if _, err := e.k.Connect(ctx, seen.grant(e.grant(id, ""))); err != nil {
			t.Fatal(err)
		}
		as := e.srv.Report().Authorisations
		auth[id] = as[len(as)-1].ID
	}
	use := func(id tokenkeeper.ConnectionID) error {
		tok, err := e.token(e.k, id)
		seen.err(err)
		if err != nil {
			return err
		}
		seen.token(tok.Value.Reveal())
		src, err := e.k.TokenSource(id, 0).Token()
		seen.err(err)
		if err == nil {
			seen.token(src.AccessToken)
		}
		resp, err := e.k.Client(id, nil).Get(e.srv.APIURL + "/v1/introspect")
		seen.err(err)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: API status %d", id, resp.StatusCode)
		}
		return nil
	}
	for _, id := range ids {
		if err := use(id); err != nil {
			t.Fatal(err)
		}
	}
	// Three expiry cycles; the second starts with one 500 from the token
	// endpoint (nothing rotates; retried).
	for cycle := range 3 {
		if cycle == 1 {
			e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.Fault500}}})
		}
		if _, err := e.srv.Advance(13 * time.Minute); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if err := use(id); err != nil {
				t.Fatalf("cycle %d: %v", cycle, err)
			}
		}
	}
	// Invalidate and a forced refresh.
	tok, err := e.token(e.k, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := e.k.Invalidate(ctx, "alpha", tok.Value)
	seen.err(err)
	seen.token(inv.Value.Reveal())
	forced, err := e.k.Refresh(ctx, "bravo")
	seen.err(err)
	seen.token(forced.Value.Reveal())

	// invalid_grant: the user revokes charlie's authorisation.
	if err := e.srv.Revoke(auth["charlie"]); err != nil {
		t.Fatal(err)
	}
	e.expire("charlie")
	_, err = e.token(e.k, "charlie")
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
		t.Fatalf("charlie after revocation: %v", err)
	}
	seen.err(err)
	// A lost response: delta's rotation happens but the answer is dropped.
	e.expire("delta")
	e.faults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultDropAfterCommit}}})
	_, err = e.token(e.k, "delta")
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeReconnectRequired {
		t.Fatalf("delta after a lost response: %v", err)
	}
	seen.err(err)
	// charlie reconnects; bravo is disconnected.
	if _, err := e.k.Connect(ctx, seen.grant(e.grant("charlie", ""))); err != nil {
		t.Fatal(err)
	}
	if err := use("charlie"); err != nil {
		t.Fatal(err)
	}
	if err := e.k.Disconnect(ctx, "bravo", "customer left"); err != nil {
		t.Fatal(err)
	}
	_, err = e.token(e.k, "bravo")
	seen.err(err)
	_, err = e.token(e.k, "nobody")
	seen.err(err)

	// The scenario happened as planned.
	if n := e.refreshes("ok"); n < 12 {
		t.Fatalf("only %d refreshes", n)
	}
	if e.refreshes("invalid_grant") < 2 || e.srv.Report().Counters["refresh_token"]["fault:"+emulator.Fault500] != 1 {
		t.Fatalf("refresh outcomes: %v", e.srv.Report().Counters["refresh_token"])
	}
	// The probes are right: every token the test saw has the emulator's
	// prefixes.
	seen.mu.Lock()
	if len(seen.tokens) < 20 {
		t.Errorf("only %d distinct tokens seen", len(seen.tokens))
	}
	var canary string
	for v := range seen.tokens {
		if !strings.HasPrefix(v, "pat_") && !strings.HasPrefix(v, "prt_") {
			t.Errorf("a token without the emulator's prefix (%d bytes)", len(v))
		}
		canary = v
	}
	seen.mu.Unlock()
	// And the scan finds what it looks for: the token and its prefix.
	if got := seen.find([]byte("x" + canary + "y")); len(got) != 2 {
		t.Fatalf("the scan found %d probes in a canary holding one token, want 2", len(got))
	}

	secret := e.client.Secret
	files := []string{e.path, e.path + "-wal", e.path + "-shm"}
	scanFiles := func(when string) {
		t.Helper()
		for _, f := range files {
			b, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			seen.scan(t, when+" "+f[strings.LastIndex(f, "/")+1:], b, secret)
		}
	}
	// The WAL holds the latest writes until a checkpoint: scan it live.
	if fi, err := os.Stat(e.path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no live WAL to scan: %v", err)
	}
	scanFiles("live")

	if err := e.k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	scanFiles("closed")

	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"refresh attempt"`) {
		t.Fatal("the logs were not captured")
	}
	seen.scan(t, "the logs", []byte(logs), secret)
	var texts []string
	e.events.mu.Lock()
	for _, ev := range e.events.events {
		texts = append(texts, ev.Reason, ev.Subject)
	}
	nEvents := len(e.events.events)
	e.events.mu.Unlock()
	if nEvents < 15 {
		t.Fatalf("only %d events", nEvents)
	}
	seen.scan(t, "the event reasons", []byte(strings.Join(texts, "\n")), secret)
	seen.mu.Lock()
	errText := strings.Join(seen.texts, "\n")
	nErrs := len(seen.texts)
	seen.mu.Unlock()
	if nErrs < 4 {
		t.Fatalf("only %d error texts", nErrs)
	}
	seen.scan(t, "the error strings", []byte(errText), secret)
}
