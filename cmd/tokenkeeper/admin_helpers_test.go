package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// admEnv is what the admin command tests share: a keyset made by `keys generate`, a
// SQLite store in a temporary directory, and the store opened by the test itself (beside
// the commands, as another process would).
type admEnv struct {
	dir     string
	store   string // the --store value
	keyFile string
	ks      *seal.Keyset
	st      *sqlite.Store
}

func newAdmEnv(t *testing.T) *admEnv {
	t.Helper()
	dir := t.TempDir()
	e := &admEnv{dir: dir, store: "sqlite:" + filepath.Join(dir, "tk.db"), keyFile: filepath.Join(dir, "keyset.json")}
	if code, _, stderr := run(t, "keys", "generate", "--out", e.keyFile); code != exitOK {
		t.Fatalf("keys generate: exit %d\n%s", code, stderr)
	}
	e.ks = e.loadKeys(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "tk.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	return e
}

// run runs the command with --store and returns its exit code, stdout and stderr.
func (e *admEnv) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append(args, "--store", e.store)...)
}

// mustRun is run that fails the test unless the command exits 0, and returns stdout.
func (e *admEnv) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := e.run(t, args...)
	if code != exitOK {
		t.Fatalf("tokenkeeper %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

func (e *admEnv) loadKeys(t *testing.T) *seal.Keyset {
	t.Helper()
	ks, err := seal.Load(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// seed stores a connection in state, last written at updated. An active one holds
// tokens sealed with ks: "access-<id>" and "refresh-<id>".
func (e *admEnv) seed(t *testing.T, ks *seal.Keyset, id tokenkeeper.ConnectionID, state tokenkeeper.State, updated time.Time) {
	t.Helper()
	updated = updated.UTC().Truncate(time.Microsecond)
	rec := &tokenkeeper.Record{Connection: tokenkeeper.Connection{
		ID: id, Provider: tokenkeeper.ProviderPleo, Subject: "urn:pleo:company:" + string(id), Scopes: []string{"users:read"},
		State: state, Generation: 1, CreatedAt: updated, UpdatedAt: updated,
	}}
	if state == tokenkeeper.StateActive {
		rec.Tokens = tokenkeeper.SealedTokenSet{
			AccessToken:  sealField(t, ks, id, tokenkeeper.FieldAccessToken, "access-"+string(id)),
			RefreshToken: sealField(t, ks, id, tokenkeeper.FieldRefreshToken, "refresh-"+string(id)),
			Expiry:       updated.Add(time.Hour),
			ExpiresAt:    updated.Add(48 * time.Minute),
		}
		rec.NextRefreshAt = updated.Add(48 * time.Minute)
	} else {
		rec.LastError = "disconnected by test"
	}
	if err := e.st.CreateConnection(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

func sealField(t *testing.T, ks *seal.Keyset, id tokenkeeper.ConnectionID, field, value string) tokenkeeper.Sealed {
	t.Helper()
	s, err := ks.Seal([]byte(value), tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(id), field))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openField(ks *seal.Keyset, rec *tokenkeeper.Record, field string, s tokenkeeper.Sealed) (string, error) {
	b, err := ks.Open(s, tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(rec.ID), field))
	return string(b), err
}

// decode decodes the JSON that a command printed, failing the test if it is not T.
func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, out)
	}
	return v
}

// admEmulator is an in-process emulator that approves at once, with the demo client's
// credentials in the environment and the provider flags that point at it.
type admEmulator struct {
	srv   *emulator.Server
	flags []string
}

// startAdmEmulator starts the emulator and sets the client credentials in the
// environment (so the test must not be parallel).
func startAdmEmulator(t *testing.T) *admEmulator {
	t.Helper()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true, AccessTokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := emulator.DemoClient()
	t.Setenv(envClientID, c.ID)
	t.Setenv(envClientSecret, c.Secret)
	return &admEmulator{srv: srv, flags: []string{"--provider", "custom", "--auth-url", srv.URL + "/oauth/authorize",
		"--token-url", srv.URL + "/oauth/token", "--api-url", srv.APIURL}}
}

// keeper returns a keeper on the test's store, against the emulator, closed with the
// test.
func (m *admEmulator) keeper(t *testing.T, e *admEnv) *keeper.Keeper {
	t.Helper()
	c := emulator.DemoClient()
	k, err := keeper.New(keeper.Config{
		Store: e.st, Sealer: seal.NewKeyring(e.loadKeys(t)),
		Provider: tokenkeeper.CustomProvider(m.srv.URL+"/oauth/authorize", m.srv.URL+"/oauth/token", m.srv.APIURL),
		ClientID: c.ID, ClientSecret: tokenkeeper.NewSecret(c.Secret),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// connect runs the authorization code flow with PKCE at the emulator and hands the grant
// to k: a real connection, with tokens the emulator knows.
func (m *admEmulator) connect(t *testing.T, k *keeper.Keeper, id tokenkeeper.ConnectionID) {
	t.Helper()
	c := emulator.DemoClient()
	cfg := oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURIs[0], Scopes: []string{"users:read"},
		Endpoint: oauth2.Endpoint{AuthURL: m.srv.URL + "/oauth/authorize", TokenURL: m.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	authURL := cfg.AuthCodeURL("st", oauth2.SetAuthURLParam("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:])),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	resp, err := noRedirects.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second})
	sent := m.srv.Now()
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Connect(context.Background(), tokenkeeper.Grant{
		ConnectionID: id, Provider: tokenkeeper.ProviderCustom, Scopes: []string{"users:read"},
		Subject: "urn:pleo:company:test",
		Tokens: tokenkeeper.TokenSet{AccessToken: tokenkeeper.NewSecret(tok.AccessToken),
			RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken), Expiry: sent.Add(time.Duration(tok.ExpiresIn) * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
}
