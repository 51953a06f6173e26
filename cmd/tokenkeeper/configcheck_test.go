package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// configEnv writes a config file and a keyset, sets the client credentials in the
// environment, and returns the file's path and the arguments of a good check.
func configEnv(t *testing.T, file string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keyset.json")
	if code, _, stderr := run(t, "keys", "generate", "--out", keyFile); code != exitOK {
		t.Fatalf("keys generate: %s", stderr)
	}
	cfg := filepath.Join(dir, "tokenkeeper.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(file, "DIR", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envClientID, "client-1")
	t.Setenv(envClientSecret, "s3cr3t-client-secret")
	return cfg, []string{"config", "check", "--config", cfg, "--key-file", keyFile}
}

const goodConfig = `
store: sqlite:DIR/tk.db
public-url: https://tk.example
listen: ":9000"
log-level: debug
retention: 48h
allowed-return-url:
  - https://app.example/settings
  - https://app.example/admin
`

func TestConfigCheck(t *testing.T) {
	cfg, args := configEnv(t, goodConfig)
	// listen: file, env and flag; the flag wins. log-level: file and env; env wins.
	t.Setenv("TOKENKEEPER_LISTEN", ":9001")
	t.Setenv("TOKENKEEPER_LOG_LEVEL", "warn")
	code, stdout, stderr := run(t, append(args, "--listen", ":9002")...)
	if code != exitOK {
		t.Fatalf("config check: exit %d\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "config OK\n") {
		t.Errorf("stdout does not start with config OK:\n%s", stdout)
	}
	for _, row := range []string{
		`listen\s+:9002\s+flag`,
		`log-level\s+warn\s+env TOKENKEEPER_LOG_LEVEL`,
		`retention\s+48h\s+file ` + regexp.QuoteMeta(cfg),
		`prune-interval\s+1h\s+default`,
		`config\s+` + regexp.QuoteMeta(cfg) + `\s+flag`,
		`key-file\s+\S+keyset.json\s+flag`,
		`allowed-return-url\s+https://app.example/settings, https://app.example/admin\s+file \S+`,
		`public-url\s+https://tk.example\s+file \S+`,
		`provider\s+pleo\s+default`,
		`token-url\s+https://auth.pleo.io/oauth/token\s+provider pleo`,
		`client id\s+client-1\s+env TOKENKEEPER_CLIENT_ID`,
		`client secret\s+\[REDACTED\]\s+env TOKENKEEPER_CLIENT_SECRET`,
		`redirect uri\s+https://tk.example/oauth/callback\s+from public-url`,
	} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(stdout) {
			t.Errorf("no row matches %q:\n%s", row, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^keyset: 1 keys \(\d+\), primary \d+$`).MatchString(stdout) ||
		!strings.Contains(stdout, "tk.db does not exist yet; serve will create it") {
		t.Errorf("no keyset or store line:\n%s", stdout)
	}
	if strings.Contains(stdout+stderr, "s3cr3t") {
		t.Errorf("config check prints the client secret")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "tk.db")); err == nil {
		t.Errorf("config check created the store")
	}

	// With a store: it is opened, and counted.
	if code, _, stderr := run(t, "migrate", "--config", cfg); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	_, stdout, _ = run(t, args...)
	if !strings.Contains(stdout, "store: sqlite:"+filepath.Dir(cfg)+"/tk.db opened, schema up to date, 0 connections (0 active)") {
		t.Errorf("no store line:\n%s", stdout)
	}

	// Secrets from files.
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("file-s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envClientSecret, "")
	code, stdout, stderr = run(t, append(args, "--client-secret-file", secretFile)...)
	if code != exitOK || !regexp.MustCompile(`(?m)^client secret\s+\[REDACTED\]\s+file `+regexp.QuoteMeta(secretFile)+`$`).MatchString(stdout) ||
		strings.Contains(stdout, "file-s3cr3t") {
		t.Errorf("config check --client-secret-file: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestConfigCheck_Bad(t *testing.T) {
	for _, tt := range []struct {
		name  string
		file  string            // the config file; goodConfig if empty
		env   map[string]string // set for the test
		extra []string          // more flags
		want  string            // in the message
	}{
		{name: "StoreFlag", extra: []string{"--store", "mysql://db"}, want: "--store"},
		{name: "StoreEnv", env: map[string]string{"TOKENKEEPER_STORE": "sqlite:"}, want: "TOKENKEEPER_STORE (--store)"},
		{name: "StoreFile", file: "store: redis://x\n", want: "store in config file"},
		{name: "StoreDir", extra: []string{"--store", "sqlite:/nonexistent/dir/tk.db"}, want: "--store: the directory /nonexistent/dir does not exist"},
		{name: "StoreNotADatabase", extra: []string{"--store", "sqlite:CONFIG"}, want: "--store"},
		{name: "Listen", file: "store: sqlite:DIR/tk.db\npublic-url: https://tk.example\nlisten: \"9090\"\n", want: "listen in config file"},
		{name: "ListenEnv", env: map[string]string{"TOKENKEEPER_LISTEN": "nope"}, want: "TOKENKEEPER_LISTEN (--listen)"},
		{name: "PruneInterval", extra: []string{"--prune-interval", "1s"}, want: "--prune-interval"},
		{name: "Retention", extra: []string{"--retention", "-1h"}, want: "--retention"},
		{name: "RefreshRate", extra: []string{"--refresh-rate", "0"}, want: "--refresh-rate: 0 is not between 1 and 1000000"},
		{name: "RefreshBurstEnv", env: map[string]string{"TOKENKEEPER_REFRESH_BURST": "0"}, want: "TOKENKEEPER_REFRESH_BURST (--refresh-burst)"},
		{name: "MaxRefreshes", extra: []string{"--max-concurrent-refreshes", "0"}, want: "--max-concurrent-refreshes"},
		{name: "RefreshTimeout", extra: []string{"--refresh-timeout", "10ms"}, want: "--refresh-timeout: 10ms is shorter than a second"},
		{name: "LeaseTTL", extra: []string{"--lease-ttl", "30s", "--refresh-timeout", "20s"}, want: "--lease-ttl: 30s is less than twice --refresh-timeout (20s)"},
		{name: "RejectCooldown", extra: []string{"--reject-cooldown", "-1s"}, want: "--reject-cooldown"},
		{name: "LogLevel", extra: []string{"--log-level", "loud"}, want: "--log-level"},
		{name: "PublicURLMissing", file: "store: sqlite:DIR/tk.db\n", want: "--public-url"},
		{name: "PublicURLBad", extra: []string{"--public-url", "tk.example"}, want: "--public-url"},
		{name: "ClientID", env: map[string]string{envClientID: ""}, want: envClientID},
		{name: "ClientSecret", env: map[string]string{envClientSecret: ""}, want: envClientSecret},
		{name: "ClientSecretTwice", extra: []string{"--client-secret-file", "/etc/hostname"}, want: "--client-secret-file"},
		{name: "CustomProvider", extra: []string{"--provider", "custom"}, want: "--auth-url"},
		{name: "LinkTTL", extra: []string{"--connect-link-ttl", "200h"}, want: "--connect-link-ttl"},
		{name: "KeyFileMissing", extra: []string{"--key-file", "/nonexistent/keyset.json"}, want: "--key-file"},
		{name: "KeyFileMode", extra: []string{"--key-file", "LOOSE"}, want: "chmod 600"},
		{name: "UnknownSetting", file: goodConfig + "colour: blue\n", want: `unknown setting "colour"`},
		{name: "BadYAML", file: "store: [\n", want: "not valid YAML"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = goodConfig
			}
			cfg, args := configEnv(t, file)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dir := filepath.Dir(cfg)
			loose := filepath.Join(dir, "loose.json")
			data, _ := os.ReadFile(args[len(args)-1])
			if err := os.WriteFile(loose, data, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, x := range tt.extra {
				x = strings.ReplaceAll(x, "LOOSE", loose)
				args = append(args, strings.ReplaceAll(x, "CONFIG", cfg))
			}
			code, stdout, stderr := run(t, args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || strings.Contains(stdout, "config OK") {
				t.Errorf("exit %d, want 2 and %q in\nstdout:\n%s\nstderr:\n%s", code, tt.want, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "s3cr3t") {
				t.Errorf("the output holds the client secret")
			}
		})
	}
}
