package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := "sqlite:" + filepath.Join(dir, "fresh.db") // no serve ever ran on it

	// --json: the key once, with its record.
	code, stdout, stderr := run(t, "apikeys", "create", "--store", store, "--name", "ci", "--scopes", "admin", "--json")
	if code != exitOK {
		t.Fatalf("apikeys create --json: exit %d\n%s", code, stderr)
	}
	created := decode[httpapi.CreatedAPIKey](t, stdout)
	if _, err := tokenkeeper.ParseAPIKey(created.Key); err != nil || created.Name != "ci" ||
		!slices.Equal(created.Scopes, []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}) || created.CreatedAt.IsZero() {
		t.Fatalf("apikeys create --json = %s", stdout)
	}
	if !strings.Contains(stdout, `"key": "tk_`) {
		t.Errorf("the JSON does not hold the key in clear:\n%s", stdout)
	}

	// Human: the key alone on stdout, the warning on stderr; scopes comma-separated and
	// repeated.
	code, stdout, stderr = run(t, "apikeys", "create", "--store", store, "--name", "proxy user",
		"--scopes", "tokens,proxy", "--scopes", "tokens")
	if code != exitOK {
		t.Fatalf("apikeys create: exit %d\n%s", code, stderr)
	}
	human := strings.TrimSpace(stdout)
	id, err := tokenkeeper.ParseAPIKey(tokenkeeper.NewSecret(human))
	if err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("stdout = %q; want the key alone on one line", stdout)
	}
	if !strings.Contains(stderr, "not shown again") || !strings.Contains(stderr, string(id)) || strings.Contains(stderr, human) {
		t.Errorf("stderr = %q; want a warning naming the id, without the key", stderr)
	}

	// list never shows a key or a hash.
	code, stdout, _ = run(t, "apikeys", "list", "--store", store, "--json")
	list := decode[httpapi.APIKeyList](t, stdout)
	if code != exitOK || len(list.APIKeys) != 2 {
		t.Fatalf("apikeys list --json: exit %d\n%s", code, stdout)
	}
	want := []*httpapi.APIKey{
		{ID: created.ID, Name: "ci", Scopes: []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, CreatedAt: created.CreatedAt},
		{ID: id, Name: "proxy user", Scopes: []tokenkeeper.Scope{tokenkeeper.ScopeTokens, tokenkeeper.ScopeProxy}, CreatedAt: list.APIKeys[1].CreatedAt},
	}
	if diff := cmp.Diff(want, list.APIKeys); diff != "" {
		t.Errorf("apikeys list --json (-want +got):\n%s", diff)
	}
	_, table, _ := run(t, "apikeys", "list", "--store", store)
	for _, out := range []string{stdout, table} {
		if strings.Contains(out, created.Key.Reveal()) || strings.Contains(out, human) || strings.Contains(strings.ToLower(out), "hash") {
			t.Errorf("apikeys list shows a key or a hash:\n%s", out)
		}
	}
	if !regexp.MustCompile(`(?m)^` + string(id) + `\s+proxy user\s+tokens,proxy\s+\S+\s+-$`).MatchString(table) {
		t.Errorf("apikeys list table:\n%s", table)
	}

	// revoke, twice, then an unknown id.
	for range 2 {
		if code, stdout, stderr := run(t, "apikeys", "revoke", string(id), "--store", store); code != exitOK || !strings.Contains(stdout, "revoked") {
			t.Fatalf("apikeys revoke: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	_, stdout, _ = run(t, "apikeys", "list", "--store", store, "--json")
	if got := decode[httpapi.APIKeyList](t, stdout).APIKeys[1]; got.RevokedAt == nil {
		t.Errorf("the revoked key has no revoked_at: %s", stdout)
	}
	if code, _, stderr := run(t, "apikeys", "revoke", "akaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--store", store); code != exitNotFound {
		t.Errorf("apikeys revoke of an unknown id: exit %d, want 4\n%s", code, stderr)
	}
	if code, _, stderr := run(t, "apikeys", "revoke", created.Key.Reveal(), "--store", store); code != exitUsage ||
		strings.Contains(stderr, created.Key.Reveal()) {
		t.Errorf("apikeys revoke of a key, not an id: exit %d, want 2 without the key in\n%s", code, stderr)
	}

	// Every change is audited, newest first.
	_, stdout, _ = run(t, "audit", "list", "--store", store, "--json")
	var actions []string
	for _, e := range decode[httpapi.AuditList](t, stdout).Entries {
		actions = append(actions, e.Action)
		if !strings.HasPrefix(e.Actor, "cli:") || strings.Contains(e.Detail, "tk_") {
			t.Errorf("audit entry %+v: want a cli: actor and no key", e)
		}
	}
	if want := []string{"apikey.revoke", "apikey.revoke", "apikey.create", "apikey.create"}; !slices.Equal(actions, want) {
		t.Errorf("audit actions = %q, want %q", actions, want)
	}
}

func TestAPIKeys_Usage(t *testing.T) {
	t.Parallel()
	store := "sqlite:" + filepath.Join(t.TempDir(), "tk.db")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"NoName", []string{"--scopes", "admin"}, "--name is required"},
		{"NoScopes", []string{"--name", "x"}, "--scopes is required"},
		{"BadScope", []string{"--name", "x", "--scopes", "admin,root"}, `invalid value "admin,root" for --scopes`},
		{"LongName", []string{"--name", strings.Repeat("n", 201), "--scopes", "admin"}, "limit is 200"},
		{"Stray", []string{"--name", "x", "--scopes", "admin", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, append([]string{"apikeys", "create", "--store", store}, tt.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestConnections(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	now := time.Now()
	e.seed(t, e.ks, "acme", tokenkeeper.StateActive, now.Add(-time.Minute))
	e.seed(t, e.ks, "acme-2", tokenkeeper.StateActive, now.Add(-90*24*time.Hour)) // old, but active: never pruned
	e.seed(t, e.ks, "beta", tokenkeeper.StateDisconnected, now.Add(-40*24*time.Hour))
	e.seed(t, e.ks, "gamma", tokenkeeper.StateDisconnected, now.Add(-time.Hour))

	t.Run("List", func(t *testing.T) {
		out := e.mustRun(t, "connections", "list", "--json")
		var ids []tokenkeeper.ConnectionID
		for _, c := range decode[httpapi.ConnectionList](t, out).Connections {
			ids = append(ids, c.ID)
		}
		if want := []tokenkeeper.ConnectionID{"acme", "acme-2", "beta", "gamma"}; !slices.Equal(ids, want) {
			t.Errorf("connections list --json ids = %q, want %q", ids, want)
		}
		for _, tt := range []struct {
			args []string
			want []tokenkeeper.ConnectionID
		}{
			{[]string{"--state", "disconnected"}, []tokenkeeper.ConnectionID{"beta", "gamma"}},
			{[]string{"--prefix", "acme"}, []tokenkeeper.ConnectionID{"acme", "acme-2"}},
			{[]string{"--limit", "3"}, []tokenkeeper.ConnectionID{"acme", "acme-2", "beta"}},
			{[]string{"--limit", "0", "--state", "active", "--prefix", "acme-"}, []tokenkeeper.ConnectionID{"acme-2"}},
		} {
			var got []tokenkeeper.ConnectionID
			for _, c := range decode[httpapi.ConnectionList](t, e.mustRun(t, append([]string{"connections", "list", "--json"}, tt.args...)...)).Connections {
				got = append(got, c.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("connections list %q = %q, want %q", tt.args, got, tt.want)
			}
		}
		table := e.mustRun(t, "connections", "list")
		if !strings.HasPrefix(table, "ID ") || !strings.Contains(table, "LAST REFRESH") ||
			!regexp.MustCompile(`(?m)^acme\s+active\s+urn:pleo:company:acme\s+in 5\dm\s+-\s+in 4\dm\s+-$`).MatchString(table) ||
			!regexp.MustCompile(`(?m)^beta\s+disconnected\s+urn:pleo:company:beta\s+-\s+-\s+-\s+disconnected by test$`).MatchString(table) {
			t.Errorf("connections list:\n%s", table)
		}
		if code, _, stderr := e.run(t, "connections", "list", "--state", "gone"); code != exitUsage || !strings.Contains(stderr, "--state") {
			t.Errorf("connections list --state gone: exit %d\n%s", code, stderr)
		}
	})

	t.Run("Show", func(t *testing.T) {
		rec, err := e.st.GetConnection(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		got := decode[httpapi.Connection](t, e.mustRun(t, "connections", "show", "acme", "--json"))
		if diff := cmp.Diff(httpapi.FromRecord(rec), &got); diff != "" {
			t.Errorf("connections show --json (-want +got):\n%s", diff)
		}
		text := e.mustRun(t, "connections", "show", "--json=false", "acme")
		for _, want := range []string{"id:", "acme", "state:", "active", "subject:", "urn:pleo:company:acme", "token expires:", "generation:"} {
			if !strings.Contains(text, want) {
				t.Errorf("connections show does not say %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, "access-acme") || strings.Contains(text, "refresh-acme") {
			t.Errorf("connections show prints a token:\n%s", text)
		}
		if code, _, stderr := e.run(t, "connections", "show", "nope"); code != exitNotFound || !strings.Contains(stderr, "nope") {
			t.Errorf("connections show nope: exit %d, want 4\n%s", code, stderr)
		}
		if code, _, stderr := e.run(t, "connections", "show"); code != exitUsage || !strings.Contains(stderr, "missing ID") {
			t.Errorf("connections show without an id: exit %d, want 2\n%s", code, stderr)
		}
		if code, _, stderr := e.run(t, "connections", "show", "a/b"); code != exitUsage || !strings.Contains(stderr, "connection id") {
			t.Errorf("connections show a/b: exit %d, want 2\n%s", code, stderr)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		got := decode[httpapi.Connection](t, e.mustRun(t, "connections", "delete", "acme-2", "--json"))
		if got.State != tokenkeeper.StateDisconnected || got.AccessTokenExpiresAt != nil || !strings.HasPrefix(got.LastError, "disconnected by cli:") {
			t.Errorf("connections delete --json = %+v", got)
		}
		rec, err := e.st.GetConnection(context.Background(), "acme-2")
		if err != nil || !rec.Tokens.AccessToken.IsZero() || !rec.Tokens.RefreshToken.IsZero() {
			t.Errorf("after delete, the record is %+v, %v; want it kept with its tokens wiped", rec, err)
		}
		if code, stdout, _ := e.run(t, "connections", "delete", "acme-2"); code != exitOK || !strings.Contains(stdout, "acme-2 disconnected") {
			t.Errorf("connections delete again: exit %d\n%s", code, stdout)
		}
		if code, _, stderr := e.run(t, "connections", "delete", "nope"); code != exitNotFound {
			t.Errorf("connections delete nope: exit %d, want 4\n%s", code, stderr)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		code, out, stderr := e.run(t, "connections", "prune", "--dry-run", "--json")
		dry := decode[httpapi.PruneResult](t, out)
		if code != exitOK || !dry.DryRun || len(dry.Pruned) != 1 || dry.Pruned[0].ID != "beta" {
			t.Errorf("connections prune --dry-run --json: exit %d, %+v; want beta only", code, dry)
		}
		if !strings.Contains(stderr, `msg="prune: would remove connection (dry run)" connection=beta`) ||
			strings.Contains(stderr, "removed connection") || strings.Contains(stderr, "connection pruned") {
			t.Errorf("prune --dry-run's stderr, want beta logged as a removal to come only:\n%s", stderr)
		}
		if _, err := e.st.GetConnection(context.Background(), "beta"); err != nil {
			t.Errorf("a dry run removed beta: %v", err)
		}
		code, out, stderr = e.run(t, "connections", "prune", "--retention", "30m")
		// acme-2 was disconnected by the Delete test just now: kept.
		if code != exitOK || !strings.HasPrefix(out, "removed 2 connections\n") || !strings.Contains(out, "beta") || !strings.Contains(out, "gamma") {
			t.Errorf("connections prune --retention 30m: exit %d\n%s%s", code, out, stderr)
		}
		// Every removal is logged on stderr, as serve logs it: the keeper's line and the
		// event's; nothing else is removed, and stdout holds no log.
		for _, id := range []string{"beta", "gamma"} {
			for _, msg := range []string{`level=INFO msg="prune: removed connection" connection=` + id + ` state=`,
				`level=INFO msg="connection pruned" connection=` + id + ` subject=urn:pleo:company:` + id + ` reason=`} {
				if !strings.Contains(stderr, msg) {
					t.Errorf("prune's stderr does not log %q:\n%s", msg, stderr)
				}
			}
		}
		if n := strings.Count(stderr, "prune: removed connection"); n != 2 || strings.Contains(out, "level=") {
			t.Errorf("prune logged %d removals on stderr, want 2 (and none on stdout):\n%s", n, stderr)
		}
		for id, want := range map[tokenkeeper.ConnectionID]tokenkeeper.Code{"beta": tokenkeeper.CodeNotFound, "gamma": tokenkeeper.CodeNotFound, "acme-2": "", "acme": ""} {
			if _, err := e.st.GetConnection(context.Background(), id); tokenkeeper.ErrorCode(err) != want {
				t.Errorf("after prune, GetConnection(%s) = %v, want code %q", id, err, want)
			}
		}
		if out := e.mustRun(t, "connections", "prune"); out != "removed 0 connections\n" {
			t.Errorf("a second prune: %q", out)
		}
		if code, _, stderr := e.run(t, "connections", "prune", "--retention", "0s"); code != exitUsage || !strings.Contains(stderr, "--retention") {
			t.Errorf("prune --retention 0s: exit %d, want 2\n%s", code, stderr)
		}
	})

	t.Run("Audit", func(t *testing.T) {
		all := decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json"))
		var got []string
		for _, a := range all.Entries {
			got = append(got, a.Action+" "+string(a.ConnectionID)+" "+a.Detail)
		}
		want := []string{
			"connection.prune gamma retention=30m0s", "connection.prune beta retention=30m0s",
			"connection.delete acme-2 revoke=false", "connection.delete acme-2 revoke=false",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit list --json (-want +got):\n%s", diff)
		}
		one := decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json", "--connection", "beta"))
		if len(one.Entries) != 1 || one.Entries[0].Action != "connection.prune" {
			t.Errorf("audit list --connection beta = %+v", one.Entries)
		}
		if n := len(decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json", "--limit", "3")).Entries); n != 3 {
			t.Errorf("audit list --limit 3 gave %d entries", n)
		}
		table := e.mustRun(t, "audit", "list", "--limit", "1")
		if !regexp.MustCompile(`(?m)^ID\s+TIME\s+ACTOR\s+ACTION\s+CONNECTION\s+DETAIL\n\d+\s+\S+\s+cli:\S+\s+connection.prune\s+gamma\s+retention=30m0s$`).MatchString(table) {
			t.Errorf("audit list --limit 1:\n%s", table)
		}
	})
}

func TestConnections_RefreshAndRevoke(t *testing.T) {
	e := newAdmEnv(t)
	emu := startAdmEmulator(t)
	k := emu.keeper(t, e)
	emu.connect(t, k, "acme")
	emu.connect(t, k, "beta")
	k.Close() // the commands are the only keepers from here on
	before, err := e.st.GetConnection(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	withKeys := append([]string{"--key-file", e.keyFile}, emu.flags...)

	out := e.mustRun(t, append([]string{"connections", "refresh", "acme"}, withKeys...)...)
	after, err := e.st.GetConnection(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	access, err := openField(e.ks, after, tokenkeeper.FieldAccessToken, after.Tokens.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation <= before.Generation || after.Tokens.AccessToken.KeyID == "" {
		t.Errorf("refresh did not write a new token set: generation %d -> %d", before.Generation, after.Generation)
	}
	wantLine := "connection acme refreshed: the new access token expires at " + stamp(after.Tokens.Expiry)
	if !strings.HasPrefix(out, wantLine) || strings.Contains(out, access) {
		t.Errorf("connections refresh printed %q; want %q... and never the token", out, wantLine)
	}
	got := decode[httpapi.Connection](t, e.mustRun(t, append([]string{"connections", "refresh", "acme", "--json"}, withKeys...)...))
	if got.ID != "acme" || got.AccessTokenExpiresAt == nil || got.Generation <= after.Generation {
		t.Errorf("connections refresh --json = %+v", got)
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NotFound", append([]string{"connections", "refresh", "nope"}, withKeys...), exitNotFound, "nope"},
		{"NoKeyFile", append([]string{"connections", "refresh", "acme"}, emu.flags...), exitUsage, "--key-file"},
		{"MissingKeyFile", append([]string{"connections", "refresh", "acme", "--key-file", filepath.Join(e.dir, "none.json")}, emu.flags...), exitError, "--key-file"},
		{"ProviderDown", []string{"connections", "refresh", "acme", "--key-file", e.keyFile, "--provider", "custom",
			"--auth-url", "http://127.0.0.1:1/a", "--token-url", "http://127.0.0.1:1/t", "--api-url", "http://127.0.0.1:1"}, exitError, "acme"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := e.run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, want %d and %q in\n%s", code, tt.code, tt.want, stderr)
			}
		})
	}

	// delete --revoke uninstalls at the provider, then disconnects. It needs the client
	// credentials, which plain delete does not.
	id, secret := os.Getenv(envClientID), os.Getenv(envClientSecret)
	t.Setenv(envClientID, "")
	if code, _, stderr := e.run(t, append([]string{"connections", "delete", "beta", "--revoke"}, withKeys...)...); code != exitUsage || !strings.Contains(stderr, envClientID) {
		t.Errorf("connections delete --revoke without credentials: exit %d, want 2\n%s", code, stderr)
	}
	t.Setenv(envClientID, id)
	t.Setenv(envClientSecret, secret)
	out = e.mustRun(t, append([]string{"connections", "delete", "beta", "--revoke"}, withKeys...)...)
	if !strings.Contains(out, "beta revoked at the provider and disconnected") {
		t.Errorf("connections delete --revoke: %q", out)
	}
	rep, err := (&emulator.Remote{URL: emu.srv.URL}).Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Both connections consented for the emulator's first company, and Pleo's uninstall
	// ends the installation (this client and that company): both are revoked.
	for _, a := range rep.Authorisations {
		if a.State != emulator.AuthorisationRevoked || a.RevokedReason != emulator.RevokedInstallationDeleted {
			t.Errorf("after delete --revoke, the emulator has authorisation %+v; want it revoked as installation_deleted", a)
		}
	}
	if rec, err := e.st.GetConnection(context.Background(), "beta"); err != nil || rec.State != tokenkeeper.StateDisconnected {
		t.Errorf("beta after delete --revoke: %+v, %v", rec, err)
	}

	entries := decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json")).Entries
	var got2 []string
	for _, a := range entries {
		got2 = append(got2, a.Action+" "+string(a.ConnectionID)+" "+a.Detail)
	}
	if want := []string{"connection.delete beta revoke=true", "connection.refresh acme ", "connection.refresh acme "}; !slices.Equal(got2, want) {
		t.Errorf("audit = %q, want %q", got2, want)
	}
}

func TestConnectURL(t *testing.T) {
	e := newAdmEnv(t)
	startAdmEmulator(t)
	public := []string{"--public-url", "https://tk.example/base", "--allowed-return-url", "https://app.example/settings"}

	out := e.mustRun(t, append([]string{"connect-url", "acme", "--return-to", "https://app.example/settings/pleo"}, public...)...)
	if !regexp.MustCompile(`^https://tk\.example/base/connect/[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Errorf("connect-url printed %q; want the link alone", out)
	}
	got := decode[httpapi.ConnectSession](t, e.mustRun(t, append([]string{"connect-url", "acme", "--ttl", "2h", "--json"}, public...)...))
	if got.ConnectionID != "acme" || !strings.HasPrefix(got.URL, "https://tk.example/base/connect/") ||
		got.ExpiresAt.Before(time.Now().Add(119*time.Minute)) || got.ExpiresAt.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("connect-url --ttl 2h --json = %+v", got)
	}
	entries := decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json")).Entries
	if len(entries) != 2 || entries[0].Action != "connect_session.create" || entries[0].ConnectionID != "acme" ||
		entries[0].Detail != "expires_at="+got.ExpiresAt.Format(time.RFC3339) {
		t.Errorf("audit entries = %+v", entries)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"NoPublicURL", []string{"connect-url", "acme"}, "--public-url"},
		{"ReturnNotAllowed", append([]string{"connect-url", "acme", "--return-to", "https://evil.example/"}, public...), "--return-to"},
		{"LongTTL", append([]string{"connect-url", "acme", "--ttl", "169h"}, public...), "--ttl"},
		{"BadID", append([]string{"connect-url", "a b"}, public...), "connection id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := e.run(t, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, tt.want)
			}
		})
	}
	t.Setenv(envClientSecret, "")
	if code, _, stderr := e.run(t, append([]string{"connect-url", "acme"}, public...)...); code != exitUsage || !strings.Contains(stderr, envClientSecret) {
		t.Errorf("connect-url without a client secret: exit %d\n%s", code, stderr)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.db")
	code, stdout, stderr := run(t, "migrate", "--store", "sqlite:"+path)
	if code != exitOK || !strings.Contains(stdout, "up to date") {
		t.Fatalf("migrate: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("migrate made no store: %v", err)
	}
	if code, _, stderr := run(t, "migrate", "--store", "mysql://x"); code != exitUsage || !strings.Contains(stderr, "--store") {
		t.Errorf("migrate --store mysql://x: exit %d\n%s", code, stderr)
	}
}

func TestAdmin_Help(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{[]string{"help"}, exitOK, "connect-url", ""},
		{[]string{"help"}, exitOK, "4  connections show, delete, refresh; apikeys revoke", ""},
		{[]string{"help", "connections"}, exitOK, "Exit codes: 0 success, 1 runtime error, 2 usage error, 4", ""},
		{[]string{"connections", "list", "-h"}, exitOK, "(command line only)", ""},
		{[]string{"connections", "show", "-h"}, exitOK, "$TOKENKEEPER_SERVER", ""},
		{[]string{"connections", "delete", "-h"}, exitOK, "--revoke", ""},
		{[]string{"connections", "refresh", "-h"}, exitOK, "$TOKENKEEPER_KEY_FILE", ""},
		{[]string{"connections", "prune", "-h"}, exitOK, "--dry-run", ""},
		{[]string{"help", "connect-url"}, exitOK, "(command line only)", ""},
		{[]string{"help", "apikeys"}, exitOK, "printed once", ""},
		{[]string{"apikeys", "create", "-h"}, exitOK, "$TOKENKEEPER_SCOPES", ""},
		{[]string{"help", "audit"}, exitOK, "$TOKENKEEPER_CONNECTION", ""},
		{[]string{"help", "keys"}, exitOK, "rotate", ""},
		{[]string{"keys", "rotate", "-h"}, exitOK, "run the same command", ""},
		{[]string{"keys", "generate", "-h"}, exitOK, "$TOKENKEEPER_OUT", ""},
		{[]string{"help", "migrate"}, exitOK, "--store", ""},
		{[]string{"help", "config"}, exitOK, "$TOKENKEEPER_LISTEN", ""},
		{[]string{"config", "check", "-h"}, exitOK, "flag, env, file or default", ""},
		{[]string{"connections"}, exitUsage, "", "missing a command"},
		{[]string{"connections", "purge"}, exitUsage, "", `unknown command "purge"`},
		{[]string{"keys"}, exitUsage, "", "missing a command"},
		{[]string{"config"}, exitUsage, "", "missing a command"},
		{[]string{"audit", "show"}, exitUsage, "", `unknown command "show"`},
	} {
		code, stdout, stderr := run(t, tt.args...)
		if code != tt.code || !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("Main(%q) = %d, want %d with %q on stdout and %q on stderr\nstdout:\n%s\nstderr:\n%s",
				tt.args, code, tt.code, tt.wantStdout, tt.wantStderr, stdout, stderr)
		}
	}
}
