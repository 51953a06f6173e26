package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// noProxy stands in for the proxy, which the admin commands never call.
type noProxy struct{}

func (noProxy) Forward(w http.ResponseWriter, _ *http.Request, _ tokenkeeper.ConnectionID, _ string) {
	http.Error(w, "no proxy in this test", http.StatusNotImplemented)
}

// startAdmServer serves the HTTP API on e's store, with a keeper and a connect flow
// against emu, and returns its URL.
func startAdmServer(t *testing.T, e *admEnv, emu *admEmulator) string {
	t.Helper()
	k := emu.keeper(t, e)
	c := emulator.DemoClient()
	public, _ := url.Parse("https://tk.example")
	flow, err := connect.New(connect.Config{
		Provider:     tokenkeeper.CustomProvider(emu.srv.URL+"/oauth/authorize", emu.srv.URL+"/oauth/token", emu.srv.APIURL),
		ClientID:     c.ID,
		ClientSecret: tokenkeeper.NewSecret(c.Secret),
		RedirectURL:  public.String() + "/oauth/callback",
		Store:        e.st, Sealer: seal.NewKeyring(e.ks), Keeper: k,
	})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{Keeper: k, Flow: flow, Proxy: noProxy{}, Store: e.st, APIKeys: e.st, Audit: e.st,
		PublicURL: public, Retention: defaultRetention})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAdmin_Remote(t *testing.T) {
	e := newAdmEnv(t)
	emu := startAdmEmulator(t)
	k := emu.keeper(t, e)
	emu.connect(t, k, "acme")
	emu.connect(t, k, "beta")
	e.seed(t, e.ks, "old", tokenkeeper.StateDisconnected, time.Now().Add(-40*24*time.Hour))
	base := startAdmServer(t, e, emu)

	admin := decode[httpapi.CreatedAPIKey](t, e.mustRun(t, "apikeys", "create", "--name", "admin", "--scopes", "admin", "--json"))
	reader := decode[httpapi.CreatedAPIKey](t, e.mustRun(t, "apikeys", "create", "--name", "reader", "--scopes", "tokens", "--json"))
	t.Setenv(envAPIKey, admin.Key.Reveal())
	// remote runs a command against the service, with a store that does not exist: it
	// must not be opened.
	remote := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(args, "--server", base, "--store", "sqlite:"+filepath.Join(e.dir, "none", "x.db"))...)
	}
	mustRemote := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := remote(args...)
		if code != exitOK {
			t.Fatalf("tokenkeeper %s --server: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}

	// Reads give what the store-direct commands give.
	for _, args := range [][]string{
		{"connections", "list", "--json"},
		{"connections", "list", "--json", "--state", "active", "--limit", "1"},
		{"connections", "list", "--json", "--prefix", "be"},
		{"connections", "show", "acme", "--json"},
		{"apikeys", "list", "--json"},
		{"audit", "list", "--json"},
		{"apikeys", "list"},
	} {
		if diff := cmp.Diff(e.mustRun(t, args...), mustRemote(args...)); diff != "" {
			t.Errorf("%q: store-direct and --server differ (-store +server):\n%s", args, diff)
		}
	}

	t.Run("Connections", func(t *testing.T) {
		got := decode[httpapi.Connection](t, mustRemote("connections", "refresh", "acme", "--json"))
		if got.ID != "acme" || got.LastRefreshAt == nil {
			t.Errorf("connections refresh --json = %+v", got)
		}
		if out := mustRemote("connections", "refresh", "acme"); !strings.HasPrefix(out, "connection acme refreshed: the new access token expires at ") {
			t.Errorf("connections refresh: %q", out)
		}
		dry := decode[httpapi.PruneResult](t, mustRemote("connections", "prune", "--dry-run", "--json"))
		if !dry.DryRun || len(dry.Pruned) != 1 || dry.Pruned[0].ID != "old" {
			t.Errorf("connections prune --dry-run = %+v", dry)
		}
		if out := mustRemote("connections", "prune"); !strings.HasPrefix(out, "removed 1 connections\n") {
			t.Errorf("connections prune: %q", out)
		}
		got = decode[httpapi.Connection](t, mustRemote("connections", "delete", "beta", "--json"))
		if got.State != tokenkeeper.StateDisconnected {
			t.Errorf("connections delete --json = %+v", got)
		}
		for _, args := range [][]string{{"connections", "show", "nope"}, {"connections", "delete", "nope"}, {"connections", "refresh", "nope"}} {
			if code, _, stderr := remote(args...); code != exitNotFound {
				t.Errorf("%q --server: exit %d, want 4\n%s", args, code, stderr)
			}
		}
		if code, _, stderr := remote("connections", "prune", "--retention", "1h"); code != exitUsage || !strings.Contains(stderr, "--retention") {
			t.Errorf("prune --retention with --server: exit %d, want 2\n%s", code, stderr)
		}
	})

	t.Run("ConnectURL", func(t *testing.T) {
		link := decode[httpapi.ConnectSession](t, mustRemote("connect-url", "gamma", "--ttl", "1h", "--return-to", "/done", "--json"))
		if link.ConnectionID != "gamma" || !strings.HasPrefix(link.URL, "https://tk.example/connect/") ||
			link.ExpiresAt.After(time.Now().Add(time.Hour)) || link.ExpiresAt.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("connect-url --json = %+v", link)
		}
		if out := mustRemote("connect-url", "gamma"); !strings.HasPrefix(out, "https://tk.example/connect/") {
			t.Errorf("connect-url: %q", out)
		}
	})

	t.Run("APIKeys", func(t *testing.T) {
		created := decode[httpapi.CreatedAPIKey](t, mustRemote("apikeys", "create", "--name", "ci", "--scopes", "proxy", "--json"))
		if _, err := tokenkeeper.ParseAPIKey(created.Key); err != nil || created.Name != "ci" {
			t.Errorf("apikeys create --json = %+v", created)
		}
		if out := mustRemote("apikeys", "revoke", string(created.ID)); !strings.Contains(out, "revoked") {
			t.Errorf("apikeys revoke: %q", out)
		}
		if code, _, stderr := remote("apikeys", "revoke", "akaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); code != exitNotFound {
			t.Errorf("apikeys revoke of an unknown key: exit %d, want 4\n%s", code, stderr)
		}
	})

	t.Run("Audit", func(t *testing.T) {
		var got []string
		for _, a := range decode[httpapi.AuditList](t, mustRemote("audit", "list", "--json")).Entries {
			if strings.HasPrefix(a.Actor, "apikey:") {
				if a.Actor != "apikey:"+string(admin.ID) {
					t.Errorf("audit entry by %s, want the admin key", a.Actor)
				}
				got = append(got, a.Action+" "+string(a.ConnectionID))
			}
		}
		want := []string{"apikey.revoke ", "apikey.create ", "connect_session.create gamma", "connect_session.create gamma",
			"connection.delete beta", "connection.prune old", "connection.refresh acme", "connection.refresh acme"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit entries by the API key (-want +got):\n%s", diff)
		}
		one := decode[httpapi.AuditList](t, mustRemote("audit", "list", "--json", "--connection", "gamma", "--limit", "1"))
		if len(one.Entries) != 1 || one.Entries[0].ConnectionID != "gamma" {
			t.Errorf("audit list --connection gamma --limit 1 = %+v", one.Entries)
		}
	})

	t.Run("Keys", func(t *testing.T) {
		// A key from a file; none in the environment.
		t.Setenv(envAPIKey, "")
		keyFile := filepath.Join(e.dir, "reader.key")
		if err := os.WriteFile(keyFile, []byte(reader.Key.Reveal()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out := mustRemote("connections", "list", "--json", "--api-key-file", keyFile)
		if n := len(decode[httpapi.ConnectionList](t, out).Connections); n != 2 {
			t.Errorf("connections list with the reader key: %d connections, want 2", n)
		}
		// A tokens key may not delete: a runtime error, 1.
		if code, _, stderr := remote("connections", "delete", "acme", "--api-key-file", keyFile); code != exitError || !strings.Contains(stderr, "forbidden") && !strings.Contains(stderr, "scope") {
			t.Errorf("delete with a tokens key: exit %d, want 1\n%s", code, stderr)
		}
		for _, tt := range []struct {
			name string
			env  string
			args []string
			want string
		}{
			{"NoKey", "", nil, envAPIKey},
			{"BothKeys", reader.Key.Reveal(), []string{"--api-key-file", keyFile}, "use one"},
			{"MalformedKey", "not-a-key", nil, "is not an API key"},
			{"MissingFile", "", []string{"--api-key-file", filepath.Join(e.dir, "none")}, "--api-key-file"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Setenv(envAPIKey, tt.env)
				code, _, stderr := remote(append([]string{"connections", "list"}, tt.args...)...)
				if code != exitUsage || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, reader.Key.Reveal()) {
					t.Errorf("exit %d, want 2 and %q (never the key) in\n%s", code, tt.want, stderr)
				}
			})
		}
		t.Setenv(envAPIKey, "tk_akaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_"+strings.Repeat("a", 52))
		if code, _, stderr := remote("connections", "list"); code != exitError || !strings.Contains(stderr, "unauthorized") && !strings.Contains(stderr, "API key") {
			t.Errorf("an unknown key: exit %d, want 1\n%s", code, stderr)
		}
		if code, _, stderr := run(t, "connections", "list", "--server", "tk.example"); code != exitUsage || !strings.Contains(stderr, "--server") {
			t.Errorf("--server tk.example: exit %d, want 2\n%s", code, stderr)
		}
		t.Setenv(envAPIKey, admin.Key.Reveal())
		if code, _, stderr := run(t, "connections", "list", "--server", "http://127.0.0.1:1"); code != exitError || !strings.Contains(stderr, "127.0.0.1:1") {
			t.Errorf("--server with nothing there: exit %d, want 1\n%s", code, stderr)
		}
	})

	// Everything went through the service: the --store given was never opened.
	if _, err := os.Stat(filepath.Join(e.dir, "none")); !os.IsNotExist(err) {
		t.Errorf("a remote command opened the --store: %v", err)
	}
}
