package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

const devUsage = `Usage: tokenkeeper dev [flags]

Runs everything on this machine, for a first look and for development: the Pleo emulator
(with a consent page, and access tokens that live 2 minutes so you can watch them
rotate), and the token service on SQLite in --data-dir, with a generated sealing key, a
demo OAuth client and an admin API key. It prints what to open and a ready curl line,
and stops on Ctrl-C. Running it again keeps the data: the connections, the key and the
API key.

Never use dev mode for real tokens: the key and the API key sit in plain files.

Flags, each with the environment variable that sets it when the flag is absent:
`

// devFlags is the command line of `tokenkeeper dev`.
type devFlags struct {
	dataDir        string
	listen         string
	emulatorListen string
	accessTTL      time.Duration
	logLevel       string
}

func newDevFlags() (*flagSet, *devFlags) {
	f := newFlagSet("tokenkeeper dev", "TOKENKEEPER_DEV_")
	c := &devFlags{}
	f.stringVar(&c.dataDir, "data-dir", ".tokenkeeper-dev", "keep the database, the key and the API key in `DIR`")
	f.stringVar(&c.listen, "listen", "127.0.0.1:8080", "`ADDR` of the token service; port 0 picks a free port")
	f.stringVar(&c.emulatorListen, "emulator-listen", "127.0.0.1:9090", "`ADDR` of the Pleo emulator; port 0 picks a free port")
	f.durationVar(&c.accessTTL, "access-token-ttl", 2*time.Minute, "access-token lifetime at the emulator, a `DURATION` of at least 10s")
	f.choiceVar(&c.logLevel, "log-level", "info", []string{"debug", "info", "warn", "error"}, "log `LEVEL`")
	return f, c
}

// runDev runs `tokenkeeper dev` until ctx is cancelled.
// devScopes are the scopes dev's connect flow asks for.
const devScopes = "users:read accounts:read export-jobs:read export-jobs:write export-items:read"

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, c := newDevFlags()
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, devUsage)
			f.printFlags(stdout)
		}
		return err
	}
	if c.accessTTL < 10*time.Second {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("%s: %s is shorter than 10s", f.source("access-token-ttl"), c.accessTTL)}
	}
	log := newLogger(stderr, "text", c.logLevel)
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("make the data directory: %w", err)
	}
	listen, err := pickAddr(c.listen)
	if err != nil {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("%s: %v", f.source("listen"), err)}
	}
	public := "http://" + listen
	client := emulator.Client{
		ID: "tokenkeeper-dev", Secret: "tokenkeeper-dev-secret", Name: "Tokenkeeper Dev",
		RedirectURIs: []string{public + "/oauth/callback"},
	}
	emu, err := emulator.Listen(emulator.Config{
		Clients:        []emulator.Client{client},
		AccessTokenTTL: c.accessTTL,
		Logger:         log.With("component", "emulator").WithGroup("emulator"),
	}, c.emulatorListen, "")
	if err != nil {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("%s: %v", f.source("emulator-listen"), err)}
	}
	defer emu.Close()

	keyFile := filepath.Join(c.dataDir, "keyset.json")
	if err := ensureKeyset(keyFile); err != nil {
		return err
	}
	s := newSettings("tokenkeeper dev", groupStore|groupKeys|groupProvider|groupServe)
	s.lookup = func(name string) (string, bool) {
		switch name {
		case envClientID:
			return client.ID, true
		case envClientSecret:
			return client.Secret, true
		}
		return "", false // dev ignores the serve variables of the shell it runs in
	}
	if _, err := s.parse([]string{
		"--store", "sqlite:" + filepath.Join(c.dataDir, "tokenkeeper.db"),
		"--key-file", keyFile,
		"--provider", tokenkeeper.ProviderCustom,
		"--auth-url", emu.URL + "/oauth/authorize", "--token-url", emu.URL + "/oauth/token", "--api-url", emu.APIURL,
		"--public-url", public, "--listen", listen, "--log-level", c.logLevel, "--app-name", client.Name,
		"--shutdown-timeout", "5s",
		// What an accounting integration asks for, so that the landing page has scopes to
		// explain.
		"--scopes", devScopes,
	}); err != nil {
		return err
	}
	keys, err := loadKeyFile(s)
	if err != nil {
		return err
	}
	var ptr atomic.Pointer[service]
	svc, err := startService(ctx, s, keys, log, serviceOptions{extra: devPages(&ptr)})
	if err != nil {
		return err
	}
	ptr.Store(svc)
	key, err := devAPIKey(ctx, svc.store, filepath.Join(c.dataDir, "admin-api-key"))
	if err != nil {
		svc.shutdown()
		return err
	}
	printDevBanner(stdout, public, emu.URL, c, key)
	return svc.wait(ctx)
}

// pickAddr returns addr, or for port 0 a free port on its host, so that the redirect URI
// registered at the emulator is known before the service starts.
func pickAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not a HOST:PORT address", addr)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// ensureKeyset writes a new keyset to path unless one is there.
func ensureKeyset(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	data, err := seal.Generate()
	if err != nil {
		return fmt.Errorf("generate the dev key: %w", err)
	}
	if err := seal.Write(path, data); err != nil {
		return fmt.Errorf("write the dev key: %w", err)
	}
	return nil
}

// devAPIKey returns the admin API key kept in path, or makes one if the file is missing
// or its key no longer works.
func devAPIKey(ctx context.Context, st backend, path string) (tokenkeeper.Secret, error) {
	if data, err := os.ReadFile(path); err == nil {
		key := tokenkeeper.NewSecret(strings.TrimSpace(string(data)))
		if id, err := tokenkeeper.ParseAPIKey(key); err == nil {
			if rec, err := st.GetAPIKey(ctx, id); err == nil && rec.Verify(key) && rec.Allows(tokenkeeper.ScopeAdmin) {
				return key, nil
			}
		}
	}
	key, rec, err := tokenkeeper.NewAPIKey("dev", []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, time.Now())
	if err != nil {
		return tokenkeeper.Secret{}, err
	}
	if err := st.CreateAPIKey(ctx, rec); err != nil {
		return tokenkeeper.Secret{}, fmt.Errorf("store the dev API key: %w", err)
	}
	_ = os.Remove(path)
	if err := os.WriteFile(path, []byte(key.Reveal()+"\n"), 0o600); err != nil {
		return tokenkeeper.Secret{}, fmt.Errorf("write the dev API key: %w", err)
	}
	return key, nil
}

func printDevBanner(w io.Writer, public, emu string, c *devFlags, key tokenkeeper.Secret) {
	k := key.Reveal()
	fmt.Fprintf(w, `tokenkeeper dev is running.

  1. Open %[1]s/ in a browser and click "Connect the demo company", then "Continue to Pleo".
     Approve on the (emulated) Pleo consent page; you come back connected.
  2. Get a token for the connection "demo":
       curl -s -X POST -H "Authorization: Bearer %[2]s" %[1]s/v1/connections/demo/token
  3. Call Pleo's API through tokenkeeper, so the token never leaves it:
       curl -s -H "Authorization: Bearer %[2]s" %[1]s/v1/connections/demo/proxy/v2/employees
  4. Watch the access token rotate every %[3]s in the log below, and on %[1]s/.
  5. Open the operator dashboard at %[1]s/ui/ and sign in with the admin API key below.

  Admin API key (kept in %[4]s): %[2]s
  Pleo emulator: %[5]s   Metrics: %[1]s/metrics
  Stop with Ctrl-C; run it again to keep going where you left off.

`, public, k, shortDuration(c.accessTTL), filepath.Join(c.dataDir, "admin-api-key"), emu)
}
