package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenStore_Existing checks that every command that works on an existing store
// refuses a SQLite path with no store, as a usage error that names the setting and the
// path, and creates nothing there.
func TestOpenStore_Existing(t *testing.T) {
	e := newAdmEnv(t)
	startAdmEmulator(t) // the client credentials, for refresh and connect-url
	path := filepath.Join(t.TempDir(), "tokenkeeper.db")
	store := "sqlite:" + path
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"ConnectionsList", []string{"connections", "list"}},
		{"ConnectionsShow", []string{"connections", "show", "acme"}},
		{"ConnectionsDelete", []string{"connections", "delete", "acme"}},
		{"ConnectionsRefresh", []string{"connections", "refresh", "acme", "--key-file", e.keyFile}},
		{"ConnectionsPrune", []string{"connections", "prune"}},
		{"ConnectionsPruneDryRun", []string{"connections", "prune", "--dry-run"}},
		{"ConnectURL", []string{"connect-url", "acme", "--public-url", "https://tk.example"}},
		{"APIKeysList", []string{"apikeys", "list"}},
		{"APIKeysRevoke", []string{"apikeys", "revoke", "akaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}},
		{"AuditList", []string{"audit", "list"}},
		{"KeysRotate", []string{"keys", "rotate", "--key-file", e.keyFile, "--settle", "0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append(tt.args, "--store", store)...)
			want := `--store: no store at ` + path + ` (sqlite); create one with "tokenkeeper migrate --store ` + store +
				`", or point --store at the existing one`
			if code != exitUsage || !strings.Contains(stderr, want) || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and %q in\n%s", code, stdout, want, stderr)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Fatalf("%s was created (%v)", path, err)
			}
		})
	}

	// The message names where the setting came from.
	t.Setenv("TOKENKEEPER_STORE", store)
	code, _, stderr := run(t, "connections", "list")
	if code != exitUsage || !strings.Contains(stderr, "TOKENKEEPER_STORE (--store): no store at "+path) {
		t.Errorf("connections list with $TOKENKEEPER_STORE: exit %d\n%s", code, stderr)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s was created (%v)", path, err)
	}
}

// TestOpenStore_Create checks that the commands that set a store up still create one on
// a fresh path, which the other commands then open.
func TestOpenStore_Create(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"Migrate", []string{"migrate"}, "up to date"},
		// Before serve ever ran: the "apikeys create works on a fresh path".
		{"APIKeysCreate", []string{"apikeys", "create", "--name", "ci", "--scopes", "admin"}, "tk_"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "fresh.db")
			store := "sqlite:" + path
			code, stdout, stderr := run(t, append(tt.args, "--store", store)...)
			if code != exitOK || !strings.Contains(stdout, tt.want) {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("no store made at %s: %v", path, err)
			}
			if code, stdout, stderr := run(t, "connections", "list", "--store", store); code != exitOK {
				t.Errorf("connections list on the new store: exit %d\n%s%s", code, stdout, stderr)
			}
		})
	}
}
