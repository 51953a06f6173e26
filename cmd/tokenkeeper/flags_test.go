package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testConfig is what testFlags parses into.
type testConfig struct {
	Name    string
	On      bool
	TTL     time.Duration
	N       uint64
	Format  string
	Items   []string
	Secrets []string
}

// testFlags returns a flagSet with one flag of each kind, reading env instead of the
// process environment.
func testFlags(env map[string]string) (*flagSet, *testConfig) {
	f := newFlagSet("tokenkeeper test", "TOKENKEEPER_TEST_")
	f.lookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c := &testConfig{}
	f.stringVar(&c.Name, "name", "def", "a `NAME`")
	f.boolVar(&c.On, "on", false, "a switch")
	f.durationVar(&c.TTL, "ttl", time.Minute, "a `DURATION`")
	f.uint64Var(&c.N, "n", 1, "a count")
	f.choiceVar(&c.Format, "format", "text", []string{"text", "json"}, "a `FORMAT`")
	listVar(f, &c.Items, "item", func(s string) (string, error) { return s, nil }, false, "an `ITEM`")
	listVar(f, &c.Secrets, "secret-item", func(s string) (string, error) {
		if !strings.HasPrefix(s, "ok") {
			return "", errors.New("want a value starting with ok")
		}
		return s, nil
	}, true, "a `SECRET`")
	return f, c
}

func TestFlagSet_Parse(t *testing.T) {
	t.Parallel()
	defaults := testConfig{Name: "def", TTL: time.Minute, N: 1, Format: "text"}
	with := func(change func(*testConfig)) testConfig {
		c := defaults
		change(&c)
		return c
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    testConfig
		wantErr string // a substring of the error; "" means no error
		notErr  string // a string the error must not contain
	}{
		{name: "Defaults", want: defaults},
		{name: "Flags", args: []string{"--name", "x", "--on", "--ttl", "90s", "--n", "7", "--format", "json", "--item", "a", "--item", "b"},
			want: with(func(c *testConfig) {
				c.Name, c.On, c.TTL, c.N, c.Format, c.Items = "x", true, 90*time.Second, 7, "json", []string{"a", "b"}
			})},
		{name: "Env", env: map[string]string{
			"TOKENKEEPER_TEST_NAME": "e", "TOKENKEEPER_TEST_ON": "true", "TOKENKEEPER_TEST_TTL": "2h",
			"TOKENKEEPER_TEST_N": "9", "TOKENKEEPER_TEST_FORMAT": "json",
			"TOKENKEEPER_TEST_ITEM": "a, b\tc,,d\n", "TOKENKEEPER_TEST_SECRET_ITEM": "ok1,ok2",
		}, want: with(func(c *testConfig) {
			c.Name, c.On, c.TTL, c.N, c.Format = "e", true, 2*time.Hour, 9, "json"
			c.Items, c.Secrets = []string{"a", "b", "c", "d"}, []string{"ok1", "ok2"}
		})},
		{name: "FlagWins", args: []string{"--ttl", "2m", "--item", "flag", "--on=false"},
			env:  map[string]string{"TOKENKEEPER_TEST_TTL": "3m", "TOKENKEEPER_TEST_ITEM": "env1,env2", "TOKENKEEPER_TEST_ON": "true"},
			want: with(func(c *testConfig) { c.TTL, c.Items = 2*time.Minute, []string{"flag"} })},
		{name: "EmptyEnvIsUnset", env: map[string]string{"TOKENKEEPER_TEST_TTL": "", "TOKENKEEPER_TEST_ITEM": " "}, want: defaults},
		{name: "OtherPrefixIgnored", env: map[string]string{"TOKENKEEPER_TTL": "bogus", "TTL": "bogus"}, want: defaults},
		{name: "BadFlag", args: []string{"--ttl", "banana"}, wantErr: `invalid value "banana" for --ttl`},
		{name: "BadBoolFlag", args: []string{"--on=maybe"}, wantErr: "--on"},
		{name: "BadChoice", args: []string{"--format", "xml"}, wantErr: "--format: want one of text, json"},
		{name: "BadEnv", env: map[string]string{"TOKENKEEPER_TEST_TTL": "bogus"}, wantErr: `"bogus" for TOKENKEEPER_TEST_TTL (--ttl)`},
		{name: "BadEnvBool", env: map[string]string{"TOKENKEEPER_TEST_ON": "maybe"}, wantErr: "TOKENKEEPER_TEST_ON"},
		{name: "BadEnvUint", env: map[string]string{"TOKENKEEPER_TEST_N": "-1"}, wantErr: "TOKENKEEPER_TEST_N"},
		{name: "SecretFlagNotEchoed", args: []string{"--secret-item", "hunter2"}, wantErr: "invalid value for --secret-item", notErr: "hunter2"},
		{name: "SecretEnvNotEchoed", env: map[string]string{"TOKENKEEPER_TEST_SECRET_ITEM": "ok1,hunter2"},
			wantErr: "invalid value for TOKENKEEPER_TEST_SECRET_ITEM", notErr: "hunter2"},
		{name: "UnknownFlag", args: []string{"--nope"}, wantErr: "unknown flag --nope"},
		{name: "MissingValue", args: []string{"--ttl"}, wantErr: "--ttl needs a value"},
		{name: "StrayArgument", args: []string{"--on", "extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, got := testFlags(tt.env)
			err := f.parse(tt.args)
			if tt.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse(%q) = %v, want a *usageError containing %q", tt.args, err, tt.wantErr)
				}
				if tt.notErr != "" && strings.Contains(err.Error(), tt.notErr) {
					t.Errorf("error %q repeats %q", err, tt.notErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q) = %v", tt.args, err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("parsed config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlagSet_Help(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		f, _ := testFlags(nil)
		if err := f.parse([]string{arg}); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parse(%q) = %v, want flag.ErrHelp", arg, err)
		}
	}
	f, _ := testFlags(nil)
	var b strings.Builder
	f.printFlags(&b)
	for _, want := range []string{"--name NAME", "$TOKENKEEPER_TEST_NAME (default def)", "--ttl DURATION", "(default 1m)",
		"--item ITEM ...", "$TOKENKEEPER_TEST_SECRET_ITEM"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printFlags does not contain %q:\n%s", want, b.String())
		}
	}
	if strings.Index(b.String(), "--name") > strings.Index(b.String(), "--format") {
		t.Errorf("printFlags does not keep the order of definition:\n%s", b.String())
	}
}

func TestFlagSet_Source(t *testing.T) {
	t.Parallel()
	f, _ := testFlags(map[string]string{"TOKENKEEPER_TEST_TTL": "1s", "TOKENKEEPER_TEST_N": "3"})
	if err := f.parse([]string{"--n", "4"}); err != nil {
		t.Fatal(err)
	}
	got := []string{f.source("ttl"), f.source("n"), f.source("name")}
	want := []string{"TOKENKEEPER_TEST_TTL (--ttl)", "--n", "--name"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("source (-want +got):\n%s", diff)
	}
}

// TestFlagSet_ProcessEnvironment reads the real environment (lookupEnv nil), so it cannot
// run in parallel.
func TestFlagSet_ProcessEnvironment(t *testing.T) {
	t.Setenv("TOKENKEEPER_TEST_TTL", "5m")
	t.Setenv("TOKENKEEPER_TEST_NAME", "from-env")
	f, c := testFlags(nil)
	f.lookupEnv = nil
	if err := f.parse([]string{"--name", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if c.TTL != 5*time.Minute || c.Name != "from-flag" {
		t.Errorf("TTL = %s, Name = %q; want 5m from the environment and from-flag from the command line", c.TTL, c.Name)
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		1440 * time.Hour: "1440h", 15 * time.Minute: "15m", 60 * time.Second: "1m", 90 * time.Second: "1m30s",
		0: "0s", 1500 * time.Millisecond: "1.5s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestFlagSet_CLIOnly: a flag marked cliOnly is set by the command line and by nothing
// else: not by its variable, not by a config file; the others still are. A stray
// TOKENKEEPER_REVOKE=true must not make every later delete uninstall the app.
func TestFlagSet_CLIOnly(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKENKEEPER_TEST_ON": "true", "TOKENKEEPER_TEST_NAME": "from-env"}
	f, c := testFlags(env)
	f.cliOnly("on", "n")
	if err := f.parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := f.applyFile("cfg.yaml", map[string][]string{"n": {"7"}}, nil); err != nil {
		t.Fatal(err)
	}
	if c.On || c.N != 1 || c.Name != "from-env" {
		t.Fatalf("on %v, n %d, name %q: want the variable and the file ignored for on and n only", c.On, c.N, c.Name)
	}
	f, c = testFlags(env)
	f.cliOnly("on")
	if err := f.parse([]string{"--on"}); err != nil || !c.On {
		t.Fatalf("--on on the command line: %v, on %v", err, c.On)
	}
	var help strings.Builder
	f.printFlags(&help)
	if !strings.Contains(help.String(), "(command line only)") || strings.Contains(help.String(), "$TOKENKEEPER_TEST_ON") {
		t.Errorf("help does not say --on is command line only:\n%s", help.String())
	}
}
