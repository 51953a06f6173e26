package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

func TestKeys_Generate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keyset.json")
	code, stdout, stderr := run(t, "keys", "generate", "--out", path)
	if code != exitOK || !strings.Contains(stdout, "wrote a new keyset to "+path) {
		t.Fatalf("keys generate: exit %d\n%s%s", code, stdout, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyset file: %v, mode %v; want 0600", err, fi.Mode())
	}
	ks, err := seal.Load(path)
	if err != nil || len(ks.KeyIDs()) != 1 {
		t.Fatalf("seal.Load: %v, %v", ks, err)
	}
	before, _ := os.ReadFile(path)

	// An existing file is kept, whoever asks.
	code, _, stderr = run(t, "keys", "generate", "--out", path)
	if after, _ := os.ReadFile(path); code != exitError || !strings.Contains(stderr, "--force") || string(after) != string(before) {
		t.Errorf("keys generate over an existing file: exit %d (want 1), file changed %v\n%s", code, string(after) != string(before), stderr)
	}
	code, _, stderr = run(t, "keys", "generate", "--out", path, "--force")
	ks2, err := seal.Load(path)
	if code != exitOK || err != nil || ks2.PrimaryKeyID() == ks.PrimaryKeyID() {
		t.Errorf("keys generate --force: exit %d, %v; want a new keyset\n%s", code, err, stderr)
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NoOut", []string{"keys", "generate"}, exitUsage, "--out is required"},
		{"NoDir", []string{"keys", "generate", "--out", filepath.Join(dir, "none", "k.json")}, exitError, "none"},
		{"Stray", []string{"keys", "generate", "--out", path, "now"}, exitUsage, "unexpected argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, stderr := run(t, tt.args...); code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, want %d and %q in\n%s", code, tt.code, tt.want, stderr)
			}
		})
	}
}

// checkSealedUnder fails unless every connection's tokens are sealed under primary and
// open under ks to what seed stored.
func checkSealedUnder(t *testing.T, e *admEnv, ks *seal.Keyset, primary string, active []tokenkeeper.ConnectionID) {
	t.Helper()
	recs, err := listRecords(context.Background(), e.st, tokenkeeper.ConnectionFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seen []tokenkeeper.ConnectionID
	for _, rec := range recs {
		if rec.Tokens.AccessToken.IsZero() {
			continue
		}
		seen = append(seen, rec.ID)
		for field, s := range map[string]tokenkeeper.Sealed{tokenkeeper.FieldAccessToken: rec.Tokens.AccessToken, tokenkeeper.FieldRefreshToken: rec.Tokens.RefreshToken} {
			if s.KeyID != primary {
				t.Errorf("%s %s is sealed under key %s, want the primary %s", rec.ID, field, s.KeyID, primary)
			}
			got, err := openField(ks, rec, field, s)
			want := strings.TrimSuffix(field, "_token") + "-" + string(rec.ID)
			if err != nil || got != want {
				t.Errorf("%s %s opens to %q, %v; want %q", rec.ID, field, got, err, want)
			}
		}
	}
	if !slices.Equal(seen, active) {
		t.Errorf("%d connections with tokens, want %d", len(seen), len(active))
	}
}

func TestKeys_Rotate(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	first := e.ks.PrimaryKeyID()
	var active []tokenkeeper.ConnectionID
	for i := range 12 {
		id := tokenkeeper.ConnectionID(fmt.Sprintf("c%02d", i))
		e.seed(t, e.ks, id, tokenkeeper.StateActive, time.Now())
		active = append(active, id)
	}
	e.seed(t, e.ks, "gone", tokenkeeper.StateDisconnected, time.Now())
	args := []string{"keys", "rotate", "--key-file", e.keyFile, "--settle", "0"}

	// Without --remove-old: the new key seals everything, the old one stays.
	code, stdout, stderr := e.run(t, args...)
	if code != exitOK {
		t.Fatalf("keys rotate: exit %d\n%s%s", code, stdout, stderr)
	}
	ks := e.loadKeys(t)
	second := ks.PrimaryKeyID()
	if second == first || !slices.Equal(ks.KeyIDs(), []string{first, second}) {
		t.Fatalf("after rotate the keyset holds %q, primary %s; want [%s new], the new one primary", ks.KeyIDs(), second, first)
	}
	checkSealedUnder(t, e, ks, second, active)
	for _, want := range []string{"added key " + second, "made key " + second + " the primary", "re-sealed 12 connections under key " + second} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, stdout)
		}
	}
	// Off a terminal, progress is a line per tenth.
	if !strings.Contains(stderr, "resealing 13/13 (100%)\n") || strings.Count(stderr, "resealing ") < 5 || strings.Contains(stderr, "\r") {
		t.Errorf("stderr has no plain progress lines:\n%s", stderr)
	}

	// A rotation stopped after its first write (the key added, not promoted) resumes
	// with that key rather than adding another.
	data, _ := os.ReadFile(e.keyFile)
	data, third, err := seal.AddKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Write(e.keyFile, data); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = e.run(t, append(args, "--remove-old")...)
	if code != exitOK || !strings.Contains(stdout, "resuming") {
		t.Fatalf("keys rotate (resume) --remove-old: exit %d\n%s%s", code, stdout, stderr)
	}
	ks = e.loadKeys(t)
	if !slices.Equal(ks.KeyIDs(), []string{third}) || ks.PrimaryKeyID() != third {
		t.Errorf("after rotate --remove-old the keyset holds %q, primary %s; want only %s", ks.KeyIDs(), ks.PrimaryKeyID(), third)
	}
	checkSealedUnder(t, e, ks, third, active)
	if !strings.Contains(stdout, "removed old keys "+min(first, second)) {
		t.Errorf("stdout does not name the removed keys:\n%s", stdout)
	}

	entries := decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json")).Entries
	if len(entries) != 2 || entries[0].Action != "keys.rotate" ||
		!regexp.MustCompile(`^primary=`+third+` resealed=12 removed=\d+,\d+$`).MatchString(entries[0].Detail) ||
		entries[1].Detail != "primary="+second+" resealed=12" {
		t.Errorf("audit entries: %+v %+v", entries[0], entries[1])
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NoKeyFile", []string{"keys", "rotate"}, exitUsage, "--key-file"},
		{"MissingKeyFile", []string{"keys", "rotate", "--key-file", filepath.Join(e.dir, "none.json")}, exitError, "--key-file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, stderr := e.run(t, tt.args...); code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, want %d and %q in\n%s", code, tt.code, tt.want, stderr)
			}
		})
	}
}

// TestKeys_RotateWrongKeyset checks that rotate changes nothing with a keyset that does
// not open what the store holds.
func TestKeys_RotateWrongKeyset(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	other, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := seal.Parse(other)
	e.seed(t, foreign, "acme", tokenkeeper.StateActive, time.Now())
	before, _ := os.ReadFile(e.keyFile)
	code, stdout, stderr := e.run(t, "keys", "rotate", "--key-file", e.keyFile, "--settle", "0")
	after, _ := os.ReadFile(e.keyFile)
	if code != exitError || !strings.Contains(stderr, "which seals connection acme") || stdout != "" || string(after) != string(before) {
		t.Errorf("keys rotate with another store's keyset: exit %d, file changed %v\n%s%s", code, string(after) != string(before), stdout, stderr)
	}
}

// TestKeys_RemoveOldKeysRefusesStale checks the last guard of --remove-old: a connection
// sealed under an old key after the re-seal passed it (by a process still running the
// old keyset) keeps the old keys in the file.
func TestKeys_RemoveOldKeysRefusesStale(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	old := e.ks
	data, _ := os.ReadFile(e.keyFile)
	data, newID, err := seal.Rotate(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Write(e.keyFile, data); err != nil {
		t.Fatal(err)
	}
	e.seed(t, old, "late", tokenkeeper.StateActive, time.Now())
	_, _, err = removeOldKeys(context.Background(), e.st, e.keyFile, data, newID)
	if err == nil || !strings.Contains(err.Error(), "late") {
		t.Errorf("removeOldKeys = %v; want a refusal naming the connection", err)
	}
	if ks := e.loadKeys(t); len(ks.KeyIDs()) != 2 {
		t.Errorf("the keyset holds %q; want both keys kept", ks.KeyIDs())
	}
}

// TestKeys_RotateReadsEveryPage seals more connections than a store page holds.
func TestKeys_RotateReadsEveryPage(t *testing.T) {
	if testing.Short() {
		t.Skip("seals 1,100 connections")
	}
	t.Parallel()
	e := newAdmEnv(t)
	var active []tokenkeeper.ConnectionID
	for i := range 1100 {
		id := tokenkeeper.ConnectionID(fmt.Sprintf("c%04d", i))
		e.seed(t, e.ks, id, tokenkeeper.StateActive, time.Now())
		active = append(active, id)
	}
	code, stdout, stderr := e.run(t, "keys", "rotate", "--key-file", e.keyFile, "--remove-old", "--settle", "0")
	if code != exitOK || !strings.Contains(stdout, "re-sealed 1100 connections") {
		t.Fatalf("keys rotate: exit %d\n%s%s", code, stdout, stderr)
	}
	ks := e.loadKeys(t)
	checkSealedUnder(t, e, ks, ks.PrimaryKeyID(), active)
	if len(ks.KeyIDs()) != 1 {
		t.Errorf("the keyset holds %q", ks.KeyIDs())
	}
}

// TestKeys_RotateWrongStore replays the mistake of running rotate from another directory
// without --store: the default sqlite:tokenkeeper.db named a store that did not exist,
// which used to be created, empty, so that --remove-old dropped the key of every real
// connection. Every way there now exits 2, leaves the keyset byte for byte as it was, and
// creates no store in the working directory.
func TestKeys_RotateWrongStore(t *testing.T) {
	root := t.TempDir()
	prod, elsewhere := filepath.Join(root, "prod"), filepath.Join(root, "elsewhere")
	for _, d := range []string{prod, elsewhere} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	keyFile := filepath.Join(prod, "keyset.json")
	if code, _, stderr := run(t, "keys", "generate", "--out", keyFile); code != exitOK {
		t.Fatalf("keys generate: exit %d\n%s", code, stderr)
	}
	e := &admEnv{dir: prod, keyFile: keyFile}
	e.ks = e.loadKeys(t)
	var err error
	if e.st, err = sqlite.Open(context.Background(), filepath.Join(prod, "tokenkeeper.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.seed(t, e.ks, "acme", tokenkeeper.StateActive, time.Now())
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(root, "tokenkeeper.yaml")
	if err := os.WriteFile(config, []byte("store: sqlite:tokenkeeper.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Chdir(elsewhere)
	rotate := []string{"keys", "rotate", "--key-file", "../prod/keyset.json", "--remove-old", "--settle", "0"}
	for _, tt := range []struct {
		name string
		env  string // TOKENKEEPER_STORE
		args []string
		want string
	}{
		{"NoStore", "", nil, "--store is required"},
		// Given, but naming a store that does not exist here: not created.
		{"Flag", "", []string{"--store", "sqlite:tokenkeeper.db"}, "--store: no store at " + filepath.Join(elsewhere, "tokenkeeper.db")},
		{"Env", "sqlite:tokenkeeper.db", nil, "TOKENKEEPER_STORE (--store): no store at "},
		{"ConfigFile", "", []string{"--config", config}, "store in config file " + config + " (--store): no store at "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TOKENKEEPER_STORE", tt.env)
			code, stdout, stderr := run(t, append(rotate, tt.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and %q in\n%s", code, stdout, tt.want, stderr)
			}
		})
	}

	// The empty store an earlier run left behind: --remove-old is refused.
	if code, _, stderr := run(t, "migrate", "--store", "sqlite:tokenkeeper.db"); code != exitOK {
		t.Fatalf("migrate: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := run(t, append(rotate, "--store", "sqlite:tokenkeeper.db")...)
	if code != exitUsage || !strings.Contains(stderr, "refusing --remove-old") || stdout != "" {
		t.Errorf("rotate --remove-old on an empty store: exit %d, stdout %q; want 2 and a refusal in\n%s", code, stdout, stderr)
	}
	if err := os.Remove("tokenkeeper.db"); err != nil {
		t.Fatal(err)
	}

	if after, _ := os.ReadFile(keyFile); string(after) != string(before) {
		t.Errorf("the keyset changed:\nbefore %s\nafter  %s", before, after)
	}
	if names, _ := filepath.Glob(filepath.Join(elsewhere, "*")); len(names) > 0 {
		t.Errorf("the working directory holds %q; want nothing", names)
	}
	// The real store's connection still opens under the keyset.
	checkSealedUnder(t, e, e.loadKeys(t), e.ks.PrimaryKeyID(), []tokenkeeper.ConnectionID{"acme"})
}

// TestKeys_RotateRemoveOldNoToken checks that --remove-old is refused, with nothing
// changed, on a store that holds no token under a key of the file: nothing shows that
// the file is its keyset. Without --remove-old, rotate goes ahead, with a note.
func TestKeys_RotateRemoveOldNoToken(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	args := []string{"keys", "rotate", "--key-file", e.keyFile, "--settle", "0"}
	check := func(t *testing.T, want string) {
		t.Helper()
		before, _ := os.ReadFile(e.keyFile)
		code, stdout, stderr := e.run(t, append(args, "--remove-old")...)
		after, _ := os.ReadFile(e.keyFile)
		if code != exitUsage || !strings.Contains(stderr, "refusing --remove-old: store "+e.store) ||
			!strings.Contains(stderr, want) || !strings.Contains(stderr, "Nothing was changed") || stdout != "" {
			t.Errorf("rotate --remove-old: exit %d, stdout %q; want 2 and %q in\n%s", code, stdout, want, stderr)
		}
		if string(after) != string(before) {
			t.Errorf("the keyset changed:\nbefore %s\nafter  %s", before, after)
		}
		if n := len(decode[httpapi.AuditList](t, e.mustRun(t, "audit", "list", "--json")).Entries); n != 0 {
			t.Errorf("%d audit entries; want none", n)
		}
	}

	t.Run("Empty", func(t *testing.T) { check(t, "holds no connection") })
	// Connections, but none holds a token: as little evidence.
	e.seed(t, e.ks, "gone", tokenkeeper.StateDisconnected, time.Now())
	t.Run("NoToken", func(t *testing.T) { check(t, "holds 1 connection but no sealed token") })

	code, stdout, stderr := e.run(t, args...)
	if code != exitOK || !strings.Contains(stderr, "note: store "+e.store+" holds 1 connection but no sealed token") {
		t.Fatalf("rotate without --remove-old: exit %d\n%s%s", code, stdout, stderr)
	}
	if ks := e.loadKeys(t); len(ks.KeyIDs()) != 2 {
		t.Errorf("the keyset holds %q; want the old key and the new", ks.KeyIDs())
	}
}
