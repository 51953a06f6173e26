package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// flagSet is a flag.FlagSet whose every flag can also be set by an environment variable:
// the prefix followed by the flag name in upper case with dashes as underscores, so with
// prefix TOKENKEEPER_EMULATOR_, --access-token-ttl reads
// TOKENKEEPER_EMULATOR_ACCESS_TOKEN_TTL. A flag given on the command line wins over its
// variable, and an empty variable counts as unset. A repeatable flag takes a list from
// its variable, separated by commas or whitespace.
//
// Errors name the flag (--name) or the variable that held the bad value, and never repeat
// a value that may hold a secret. A flagSet is not safe for concurrent use.
type flagSet struct {
	fs     *flag.FlagSet
	prefix string
	// lookupEnv reads the environment. Nil means os.LookupEnv.
	lookupEnv func(string) (string, bool)
	// bad is the error of the first bad value on the command line, worded by us rather
	// than by package flag (which says -name and, for a duration, only "parse error").
	bad error
	// order lists the flags as defined, for printFlags.
	order []string
	// fromEnv records the flags that parse set from the environment.
	fromEnv map[string]bool
	// fromFile records the flags that applyFile set, with the file's path.
	fromFile map[string]string
	// cli marks the flags that only the command line sets (cliOnly).
	cli map[string]bool
}

// cliOnly makes the flags names settable on the command line only, never from their
// environment variable or a config file: a command's action switches (--revoke,
// --remove-old) and selectors, which a variable left set in a shell or a deployment must
// never turn on for every later run.
func (f *flagSet) cliOnly(names ...string) {
	if f.cli == nil {
		f.cli = map[string]bool{}
	}
	for _, n := range names {
		if f.fs.Lookup(n) == nil {
			panic("cliOnly: no flag --" + n)
		}
		f.cli[n] = true
	}
}

// newFlagSet returns an empty flagSet for the command name (used in messages) whose
// variables start with prefix.
func newFlagSet(name, prefix string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // we word and print every message ourselves
	fs.Usage = func() {}
	return &flagSet{fs: fs, prefix: prefix}
}

// value is the one flag.Value behind every flag of a flagSet.
type value struct {
	set    func(string) error // parses and stores one value; the error need not name the flag
	get    func() string
	isBool bool
	isList bool // repeatable: each Set appends
	secret bool // the input may hold a secret: never echo it
}

func (v *value) Set(s string) error { return v.set(s) }

func (v *value) String() string {
	if v == nil || v.get == nil {
		return ""
	}
	return v.get()
}

// IsBoolFlag lets package flag accept --name without a value.
func (v *value) IsBoolFlag() bool { return v != nil && v.isBool }

// varValue registers v under name. usage may name the argument in backquotes, as in
// package flag: "`ADDR` to listen on".
func (f *flagSet) varValue(v *value, name, usage string) {
	inner := v.set
	f.order = append(f.order, name)
	f.fs.Var(&value{
		set: func(s string) error {
			err := inner(s)
			if err != nil && f.bad == nil {
				f.bad = f.valueError(v, s, "--"+name, err)
			}
			return err
		},
		get: v.get, isBool: v.isBool, isList: v.isList, secret: v.secret,
	}, name, usage)
}

func (f *flagSet) valueError(v *value, s, where string, err error) error {
	if v.secret {
		return fmt.Errorf("invalid value for %s: %v", where, err)
	}
	return fmt.Errorf("invalid value %q for %s: %v", s, where, err)
}

// stringVar defines a string flag.
func (f *flagSet) stringVar(p *string, name, def, usage string) {
	*p = def
	f.varValue(&value{set: func(s string) error { *p = s; return nil }, get: func() string { return *p }}, name, usage)
}

// boolVar defines a boolean flag; --name alone means true.
func (f *flagSet) boolVar(p *bool, name string, def bool, usage string) {
	*p = def
	f.varValue(&value{
		set: func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return errors.New("want true or false")
			}
			*p = b
			return nil
		},
		get:    func() string { return strconv.FormatBool(*p) },
		isBool: true,
	}, name, usage)
}

// durationVar defines a flag holding a duration in Go syntax (90s, 15m, 1440h).
func (f *flagSet) durationVar(p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	f.varValue(&value{
		set: func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil {
				return errors.New("want a duration in Go syntax, such as 90s, 15m or 1440h")
			}
			*p = d
			return nil
		},
		get: func() string { return shortDuration(*p) },
	}, name, usage)
}

// uint64Var defines a flag holding a non-negative integer.
func (f *flagSet) uint64Var(p *uint64, name string, def uint64, usage string) {
	*p = def
	f.varValue(&value{
		set: func(s string) error {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return errors.New("want a non-negative integer")
			}
			*p = n
			return nil
		},
		get: func() string { return strconv.FormatUint(*p, 10) },
	}, name, usage)
}

// choiceVar defines a string flag that takes one of choices.
func (f *flagSet) choiceVar(p *string, name, def string, choices []string, usage string) {
	*p = def
	f.varValue(&value{
		set: func(s string) error {
			for _, c := range choices {
				if s == c {
					*p = s
					return nil
				}
			}
			return fmt.Errorf("want one of %s", strings.Join(choices, ", "))
		},
		get: func() string { return *p },
	}, name, usage)
}

// listVar defines a repeatable flag: each occurrence is parsed by parse and appended to
// *p. When secret is set, errors never repeat the input.
func listVar[T any](f *flagSet, p *[]T, name string, parse func(string) (T, error), secret bool, usage string) {
	f.varValue(&value{
		set: func(s string) error {
			v, err := parse(s)
			if err != nil {
				return err
			}
			*p = append(*p, v)
			return nil
		},
		get:    func() string { return "" },
		isList: true,
		secret: secret,
	}, name, usage)
}

// envName returns the environment variable of the flag name.
func (f *flagSet) envName(name string) string {
	return f.prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parse parses args, then sets every flag that args did not give from its environment
// variable. It returns flag.ErrHelp for -h or --help, and a *usageError for anything
// wrong with args or the environment, including a stray positional argument.
func (f *flagSet) parse(args []string) error {
	if err := f.parseFlags(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("unexpected argument %q", f.fs.Arg(0))}
	}
	return f.parseEnv()
}

// parseArgs is parse for a command that takes positional arguments, which may come before,
// between or after the flags ("show ID --json"). It wants exactly len(names) of them, and
// names them in the message when some are missing.
func (f *flagSet) parseArgs(args []string, names ...string) ([]string, error) {
	var pos []string
	rest := args
	for {
		if err := f.parseFlags(rest); err != nil {
			return nil, err
		}
		if f.fs.NArg() == 0 {
			break
		}
		rest = f.fs.Args()
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	switch {
	case len(pos) < len(names):
		return nil, &usageError{cmd: f.fs.Name(), err: fmt.Errorf("missing %s", strings.Join(names[len(pos):], " "))}
	case len(pos) > len(names):
		return nil, &usageError{cmd: f.fs.Name(), err: fmt.Errorf("unexpected argument %q", pos[len(names)])}
	}
	return pos, f.parseEnv()
}

// parseFlags parses one run of flags, wording package flag's errors our way.
func (f *flagSet) parseFlags(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if f.bad != nil {
			return &usageError{cmd: f.fs.Name(), err: f.bad}
		}
		// Package flag says -name; our flags are documented as --name.
		msg := err.Error()
		if n, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			msg = "unknown flag --" + strings.TrimPrefix(n, "-")
		} else if n, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			msg = "--" + strings.TrimPrefix(n, "-") + " needs a value"
		}
		return &usageError{cmd: f.fs.Name(), err: errors.New(msg)}
	}
	return nil
}

// parseEnv sets every flag that the command line did not give from its environment
// variable.
func (f *flagSet) parseEnv() error {
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	lookup := f.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var err error
	f.fs.VisitAll(func(fl *flag.Flag) {
		if err != nil || given[fl.Name] || f.cli[fl.Name] {
			return
		}
		env := f.envName(fl.Name)
		s, ok := lookup(env)
		if !ok || strings.TrimSpace(s) == "" {
			return
		}
		v := fl.Value.(*value)
		items := []string{s}
		if v.isList {
			items = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		}
		for _, item := range items {
			if e := v.set(item); e != nil {
				err = &usageError{cmd: f.fs.Name(), err: f.valueError(v, item, env+" (--"+fl.Name+")", e)}
				return
			}
		}
		if f.fromEnv == nil {
			f.fromEnv = map[string]bool{}
		}
		f.fromEnv[fl.Name] = true
	})
	return err
}

// given reports whether the flag name was set on the command line or by its variable.
func (f *flagSet) given(name string) bool {
	set := false
	f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set || f.fromEnv[name]
}

// applyFile sets, from a config file's values (keyed by flag name), every flag that the
// command line and the environment left unset. path names the file in messages. Keys that
// are not flags of this command fail unless ignore lists them (settings that other
// commands read from the same file).
func (f *flagSet) applyFile(path string, values map[string][]string, ignore func(string) bool) error {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		fl := f.fs.Lookup(name)
		if fl == nil {
			if ignore != nil && ignore(name) {
				continue
			}
			return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("config file %s: unknown setting %q", path, name)}
		}
		if f.given(name) || f.cli[name] {
			continue
		}
		v := fl.Value.(*value)
		items := values[name]
		if len(items) > 1 && !v.isList {
			return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("config file %s: %s takes one value, not a list", path, name)}
		}
		for _, item := range items {
			if err := v.set(item); err != nil {
				return &usageError{cmd: f.fs.Name(), err: f.valueError(v, item, name+" in config file "+path, err)}
			}
		}
		if f.fromFile == nil {
			f.fromFile = map[string]string{}
		}
		f.fromFile[name] = path
	}
	return nil
}

// source names where the flag name got its value, for a message about a value that
// parsed but is still wrong: "--name", or "ENV_VAR (--name)" when parse read it from the
// environment.
func (f *flagSet) source(name string) string {
	if f.fromEnv[name] {
		return f.envName(name) + " (--" + name + ")"
	}
	if path, ok := f.fromFile[name]; ok {
		return name + " in config file " + path + " (--" + name + ")"
	}
	return "--" + name
}

// shortDuration formats d without trailing zero units: 1440h, 15m, 1m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// printFlags writes one entry per flag, in the order defined: the flag, its variable, its
// default, and its usage.
func (f *flagSet) printFlags(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range f.order {
		fl := f.fs.Lookup(n)
		arg, usage := flag.UnquoteUsage(fl)
		name := "--" + fl.Name
		if arg != "" {
			name += " " + arg
		}
		if fl.Value.(*value).isList {
			name += " ..."
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" {
			def = " (default " + fl.DefValue + ")"
		}
		from := "$" + f.envName(fl.Name)
		if f.cli[fl.Name] {
			from = "(command line only)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", name, from, def)
		fmt.Fprintf(tw, "  \t%s\n", usage)
	}
	tw.Flush()
}

// usageError is a mistake on the command line or in the environment: exit code 2.
type usageError struct {
	cmd string // the command whose usage to point at, such as "tokenkeeper emulator"
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
