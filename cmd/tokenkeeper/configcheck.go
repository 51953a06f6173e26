package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

const configUsage = `Usage: tokenkeeper config check [flags]

Checks serve's settings without starting it: it reads them as serve does (flags, then
TOKENKEEPER_* variables, then the --config file), checks each, requires what serve
requires (the client credentials, --public-url, --key-file), loads the keyset, and opens
the store (migrating it, as serve would; a SQLite file that does not exist yet is not
created). Then it prints "config OK" and every effective setting with where it came
from: flag, env, file or default. Secrets are never printed.

Exit codes: 0 the configuration is good, 1 the check could not run, 2 a setting is bad
(the message names it, and where it came from).

Flags, each with the environment variable that sets it when the flag is absent:
`

// runConfig runs `tokenkeeper config`.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		return runConfigCheck(ctx, []string{"-h"}, stdout)
	}
	return runGroup(ctx, "tokenkeeper config", configUsage, []subcommand{
		{"check", func(ctx context.Context, args []string, stdout, _ io.Writer) error {
			return runConfigCheck(ctx, args, stdout)
		}},
	}, args, stdout, stderr)
}

func runConfigCheck(ctx context.Context, args []string, stdout io.Writer) error {
	s := newSettings("tokenkeeper config check", groupStore|groupKeys|groupProvider|groupServe)
	if _, err := parseSettings(s, configUsage, stdout, args); err != nil {
		return err
	}
	for _, req := range []func() error{s.requireClient, s.requirePublicURL, s.requireKeyFile} {
		if err := req(); err != nil {
			return err
		}
	}
	bad := func(err error) error { return &usageError{cmd: s.f.fs.Name(), err: err} }
	keys, err := loadKeys(s)
	if err != nil {
		return bad(err)
	}
	storeNote, err := checkStore(ctx, s)
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "config OK")
	t := newTable(stdout, "SETTING", "VALUE", "SOURCE")
	for _, name := range s.f.order {
		origin := settingOrigin(s.f, name)
		if origin == "default" && (name == "auth-url" || name == "token-url" || name == "api-url") {
			origin = "provider " + s.prov.Name // the profile's endpoint
		}
		t.row(name, settingValue(s, name), origin)
	}
	idOrigin, secretOrigin := "env "+envClientID, "env "+envClientSecret
	if s.clientIDFile != "" {
		idOrigin = "file " + s.clientIDFile
	}
	if s.clientSecretFile != "" {
		secretOrigin = "file " + s.clientSecretFile
	}
	t.row("client id", s.clientID, idOrigin)
	t.row("client secret", s.clientSecret.String(), secretOrigin)
	t.row("redirect uri", s.redirectURL(), "from public-url")
	if err := t.flush(); err != nil {
		return err
	}
	ks := keys.Current()
	fmt.Fprintf(stdout, "keyset: %d keys (%s), primary %s\n", len(ks.KeyIDs()), strings.Join(ks.KeyIDs(), ", "), ks.PrimaryKeyID())
	_, err = fmt.Fprintf(stdout, "store: %s\n", storeNote)
	return err
}

// checkStore opens the store and closes it again, and describes it. A SQLite file that
// does not exist is not created: its directory is checked instead.
func checkStore(ctx context.Context, s *settings) (string, error) {
	kind, where, err := parseStore(s.store)
	if err != nil {
		return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("store"), err)}
	}
	if kind == "sqlite" {
		if _, err := os.Stat(where); errors.Is(err, fs.ErrNotExist) {
			dir := filepath.Dir(where)
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: the directory %s does not exist", s.f.source("store"), dir)}
			}
			return fmt.Sprintf("%s does not exist yet; serve will create it", where), nil
		}
	}
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return "", err
		}
		return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %w", s.f.source("store"), err)}
	}
	defer st.Close()
	counts, err := st.CountConnections(ctx)
	if err != nil {
		return "", fmt.Errorf("read the store: %w", err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return fmt.Sprintf("%s opened, schema up to date, %d connections (%d active)",
		redactStore(s.store), total, counts[tokenkeeper.StateActive]), nil
}

// settingValue is the effective value of the flag name, for printing: a store URL
// without its password, a list joined by commas, and the provider's endpoints as the
// profile and its overrides resolve them.
func settingValue(s *settings, name string) string {
	switch name {
	case "store":
		return redactStore(s.store)
	case "allowed-return-url":
		return strings.Join(s.allowedReturnURLs, ", ")
	case "auth-url":
		return s.prov.AuthURL
	case "token-url":
		return s.prov.TokenURL
	case "api-url":
		return s.prov.APIURL
	}
	return s.f.fs.Lookup(name).Value.String()
}

// settingOrigin says where the flag name got its value: "flag", "env VAR", "file PATH"
// or "default".
func settingOrigin(f *flagSet, name string) string {
	onCommandLine := false
	f.fs.Visit(func(fl *flag.Flag) { onCommandLine = onCommandLine || fl.Name == name })
	switch path, inFile := f.fromFile[name]; {
	case onCommandLine:
		return "flag"
	case f.fromEnv[name]:
		return "env " + f.envName(name)
	case inFile:
		return "file " + path
	}
	return "default"
}
