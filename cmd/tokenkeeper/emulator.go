package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// emulatorEnvPrefix starts the environment variable of every flag of `tokenkeeper emulator`
// and `tokenkeeper emulator report`.
const emulatorEnvPrefix = "TOKENKEEPER_EMULATOR_"

// shutdownTimeout bounds how long a stopping emulator waits for requests in flight.
const shutdownTimeout = 5 * time.Second

// emulatorFlags is the command line of `tokenkeeper emulator`.
type emulatorFlags struct {
	listen, apiListen     string
	clients               []emulator.Client
	autoApprove           bool
	accessTTL, refreshTTL time.Duration
	refreshJitter         time.Duration
	codeTTL               time.Duration
	seed                  uint64
	allowSecretPost       bool
	jwtTokens             bool
	logFormat             string
	quiet                 bool
}

// newEmulatorFlags defines the flags of `tokenkeeper emulator`. Their names are a
// contract that scripts depend on.
func newEmulatorFlags() (*flagSet, *emulatorFlags) {
	f := newFlagSet("tokenkeeper emulator", emulatorEnvPrefix)
	c := &emulatorFlags{}
	f.stringVar(&c.listen, "listen", "127.0.0.1:9090",
		"`ADDR` of the authorisation server, control plane and API; port 0 picks a free port")
	f.stringVar(&c.apiListen, "api-listen", "",
		"`ADDR` of a separate API listener; empty serves the API on --listen")
	listVar(f, &c.clients, "client", parseClientFlag, true,
		"register an OAuth client `ID:SECRET:REDIRECT_URI`; repeatable; none means the demo client")
	f.boolVar(&c.autoApprove, "auto-approve", false,
		"skip the consent page and approve every authorisation request at once")
	f.durationVar(&c.accessTTL, "access-token-ttl", emulator.DefaultAccessTokenTTL,
		"access-token lifetime (expires_in), a `DURATION` of at least 1s")
	f.durationVar(&c.refreshTTL, "refresh-token-ttl", emulator.DefaultRefreshTokenTTL,
		"refresh-token lifetime, a `DURATION` of at least 1s")
	f.durationVar(&c.refreshJitter, "refresh-token-jitter", 0,
		"add a random extra lifetime in [0, `DURATION`) to each refresh token")
	f.durationVar(&c.codeTTL, "code-ttl", emulator.DefaultCodeTTL,
		"authorization-code lifetime, a `DURATION` of at least 1s")
	f.uint64Var(&c.seed, "seed", 1,
		"`N` seeds fault injection and refresh-token jitter (0 means 1)")
	f.boolVar(&c.allowSecretPost, "allow-client-secret-post", false,
		"also accept client credentials in the request body (Pleo requires HTTP Basic)")
	f.boolVar(&c.jwtTokens, "jwt-tokens", false,
		"issue JWT-shaped tokens whose exp disagrees with expires_in")
	f.choiceVar(&c.logFormat, "log-format", "text", []string{"text", "json"},
		"log `FORMAT` on stderr: text or json")
	f.boolVar(&c.quiet, "quiet", false, "log warnings and errors only")
	return f, c
}

// parseClientFlag parses --client without ever repeating the secret in an error.
func parseClientFlag(s string) (emulator.Client, error) {
	if strings.Count(s, ":") < 2 {
		return emulator.Client{}, errors.New("want ID:SECRET:REDIRECT_URI")
	}
	c, err := emulator.ParseClient(s)
	if err != nil {
		return emulator.Client{}, errors.New(strings.TrimPrefix(err.Error(), "emulator: "))
	}
	return c, nil
}

// check validates what package flag cannot: addresses and lifetimes.
func (c *emulatorFlags) check(f *flagSet) error {
	bad := func(name, format string, args ...any) error {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("%s: "+format, append([]any{f.source(name)}, args...)...)}
	}
	for name, addr := range map[string]string{"listen": c.listen, "api-listen": c.apiListen} {
		if addr == "" && name == "api-listen" {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return bad(name, "%q is not a HOST:PORT address (use port 0 for a free port)", addr)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"access-token-ttl", c.accessTTL}, {"refresh-token-ttl", c.refreshTTL}, {"code-ttl", c.codeTTL}} {
		if d.v < time.Second {
			return bad(d.name, "%s is shorter than one second", d.v)
		}
		if d.v > emulator.MaxLifetime {
			return bad(d.name, "%s is longer than 100 years (%s)", shortDuration(d.v), shortDuration(emulator.MaxLifetime))
		}
	}
	if c.refreshJitter < 0 {
		return bad("refresh-token-jitter", "%s is negative", c.refreshJitter)
	}
	if c.refreshJitter > emulator.MaxLifetime-c.refreshTTL {
		return bad("refresh-token-jitter", "%s plus the refresh-token TTL %s is longer than 100 years (%s)",
			shortDuration(c.refreshJitter), shortDuration(c.refreshTTL), shortDuration(emulator.MaxLifetime))
	}
	return nil
}

func (c *emulatorFlags) logger(stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if c.quiet {
		opts.Level = slog.LevelWarn
	}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

const emulatorUsage = `Usage: tokenkeeper emulator [flags]
       tokenkeeper emulator report [--url URL] [--json]

Runs a local Pleo: the OAuth 2.0 authorisation server, a slice of the API, and a control
plane under /_emulator/ for time travel, fault injection and the ledger of rule
violations. It prints one line on stdout with the URLs it serves (and, when no --client
is given, one more naming the demo client), logs on stderr, and stops on SIGINT or
SIGTERM.

Flags, each with the environment variable that sets it when the flag is absent:
`

// runEmulator runs `tokenkeeper emulator` until ctx is cancelled.
func runEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "report" {
		return runEmulatorReport(ctx, args[1:], stdout)
	}
	f, c := newEmulatorFlags()
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, emulatorUsage)
			f.printFlags(stdout)
		}
		return err
	}
	if err := c.check(f); err != nil {
		return err
	}
	log := c.logger(stderr)
	cfg := emulator.Config{
		Clients:               c.clients,
		AutoApprove:           c.autoApprove,
		AllowClientSecretPost: c.allowSecretPost,
		JWTTokens:             c.jwtTokens,
		AccessTokenTTL:        c.accessTTL,
		RefreshTokenTTL:       c.refreshTTL,
		RefreshTokenJitter:    c.refreshJitter,
		CodeTTL:               c.codeTTL,
		Seed:                  c.seed,
		Logger:                log,
	}
	srv, err := emulator.Listen(cfg, c.listen, c.apiListen)
	if err != nil {
		return fmt.Errorf("start the emulator: %w", err)
	}
	fmt.Fprintf(stdout, "pleo emulator listening: auth=%s api=%s control=%s\n", srv.URL, srv.APIURL, srv.ControlURL)
	if len(c.clients) == 0 {
		d := emulator.DemoClient()
		fmt.Fprintf(stdout, "pleo emulator demo client: id=%s secret=%s redirect_uris=%s\n",
			d.ID, d.Secret, strings.Join(d.RedirectURIs, ","))
	}
	ids := make([]string, 0, len(srv.Clients()))
	for _, cl := range srv.Clients() {
		ids = append(ids, cl.ID)
	}
	log.Info("pleo emulator started", "auth", srv.URL, "api", srv.APIURL, "control", srv.ControlURL,
		"clients", ids, "auto_approve", c.autoApprove, "access_token_ttl", shortDuration(c.accessTTL),
		"refresh_token_ttl", shortDuration(c.refreshTTL), "code_ttl", shortDuration(c.codeTTL), "seed", c.seed)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-srv.Err():
		log.Error("pleo emulator listener failed", "err", serveErr)
	}
	// The caller's ctx is done; give requests in flight a deadline of their own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("pleo emulator shutdown cut short", "timeout", shortDuration(shutdownTimeout), "err", err)
		_ = srv.Close()
	}
	log.Info("pleo emulator stopped")
	if serveErr != nil {
		return fmt.Errorf("serve the emulator: %w", serveErr)
	}
	return nil
}

const reportUsage = `Usage: tokenkeeper emulator report [--url URL] [--json]

Prints the ledger of a running emulator: counters, authorisations and violations as
tables, or with --json the report as JSON. Exits 3 if the emulator recorded a rule
violation the client is to blame for, 1 if it cannot be reached, and 0 otherwise; a CI
step can run it after the test suite to fail the build on violations. Violations that
followed a lost response (an injected after-commit fault; lost_response in the JSON) are
listed but do not fail the report: a correct client cannot avoid them.

Flags, each with the environment variable that sets it when the flag is absent:
`

// reportTimeout bounds the call to a running emulator.
const reportTimeout = 30 * time.Second

// violationsError is the outcome of a report that lists violations: exit code 3.
type violationsError struct{ report emulator.Report }

func (e *violationsError) Error() string {
	n := blamed(e.report)
	noun := "violations"
	if n == 1 {
		noun = "violation"
	}
	return fmt.Sprintf("the client broke Pleo's rules: %d %s it is to blame for (all recorded: %s)", n, noun, violationSummary(e.report.ViolationCounts))
}

// runEmulatorReport runs `tokenkeeper emulator report`.
func runEmulatorReport(ctx context.Context, args []string, stdout io.Writer) error {
	f := newFlagSet("tokenkeeper emulator report", emulatorEnvPrefix)
	var rawURL string
	var asJSON bool
	f.stringVar(&rawURL, "url", "http://127.0.0.1:9090",
		"base `URL` of the running emulator, as printed at its start (auth=...)")
	f.boolVar(&asJSON, "json", false, "print the report as indented JSON instead of tables")
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, reportUsage)
			f.printFlags(stdout)
		}
		return err
	}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &usageError{cmd: f.fs.Name(), err: fmt.Errorf("%s: %q is not an http or https URL", f.source("url"), rawURL)}
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	// Remote uses http.DefaultClient, which has no timeout of its own: ctx bounds the call.
	rm := &emulator.Remote{URL: rawURL}
	rep, err := rm.Report(ctx)
	var netErr *url.Error
	switch {
	case errors.As(err, &netErr):
		return fmt.Errorf("cannot reach the emulator at %s (is `tokenkeeper emulator` running there?): %w", rawURL, err)
	case err != nil:
		return fmt.Errorf("read the report of the emulator at %s: %w", rawURL, err)
	}
	if asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the report: %w", err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return err
		}
	} else if err := printReport(stdout, rep); err != nil {
		return err
	}
	if blamed(rep) > 0 {
		return &violationsError{report: rep}
	}
	return nil
}

// blamed counts the violations the client is to blame for: all but those that followed a
// lost response, which a correct client cannot avoid under after-commit faults.
func blamed(rep emulator.Report) int {
	n := 0
	for _, c := range rep.ViolationCounts {
		n += c
	}
	return n - rep.LostResponseViolations
}

// printReport writes rep as a summary line and three tables.
func printReport(w io.Writer, rep emulator.Report) error {
	total := 0
	for _, n := range rep.ViolationCounts {
		total += n
	}
	fmt.Fprintf(w, "emulator time %s   authorisations %d   violations %d",
		rep.Now.UTC().Format(time.RFC3339), len(rep.Authorisations), total)
	if total > 0 {
		fmt.Fprintf(w, " (%s)", violationSummary(rep.ViolationCounts))
	}
	if rep.LostResponseViolations > 0 {
		fmt.Fprintf(w, ", of which %d followed a lost response", rep.LostResponseViolations)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCOUNTERS")
	fmt.Fprintln(tw, "ENDPOINT\tOUTCOME\tCOUNT")
	endpoints := make([]string, 0, len(rep.Counters))
	for ep := range rep.Counters {
		endpoints = append(endpoints, ep)
	}
	sort.Strings(endpoints)
	for _, ep := range endpoints {
		outcomes := make([]string, 0, len(rep.Counters[ep]))
		for o := range rep.Counters[ep] {
			outcomes = append(outcomes, o)
		}
		sort.Strings(outcomes)
		for _, o := range outcomes {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", ep, o, rep.Counters[ep][o])
		}
	}
	if len(endpoints) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nAUTHORISATIONS")
	fmt.Fprintln(tw, "ID\tCLIENT\tSUBJECT\tSTATE\tREFRESHES\tREVOKED REASON")
	for _, a := range rep.Authorisations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, a.ClientID, a.Subject, a.State, a.Refreshes, orDash(a.RevokedReason))
	}
	if len(rep.Authorisations) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nVIOLATIONS")
	fmt.Fprintln(tw, "AT\tRULE\tAUTHORISATION\tDETAIL")
	for _, v := range rep.Violations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"), v.Rule, orDash(v.Authorisation), v.Detail)
	}
	if len(rep.Violations) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	if rep.ViolationsDropped > 0 {
		fmt.Fprintf(tw, "... and %d more, counted but not listed\n", rep.ViolationsDropped)
	}
	return tw.Flush()
}

// violationSummary returns "rule n, rule n" sorted by rule.
func violationSummary(counts map[string]int) string {
	rules := make([]string, 0, len(counts))
	for r := range counts {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r + " " + strconv.Itoa(counts[r])
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
