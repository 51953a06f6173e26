package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenkeeper/tokenkeeper"
)

// envPrefix starts the environment variable of every flag of serve, dev and the admin
// commands: --public-url is TOKENKEEPER_PUBLIC_URL.
const envPrefix = "TOKENKEEPER_"

// The client credentials never come from flags, where `ps` would show them: they come from
// these variables, or from the files that --client-id-file and --client-secret-file name.
const (
	envClientID     = "TOKENKEEPER_CLIENT_ID"
	envClientSecret = "TOKENKEEPER_CLIENT_SECRET"
)

// defaultRetention is how long a disconnected connection, or one waiting for a reconnect,
// is kept before retention removes it.
const defaultRetention = 30 * 24 * time.Hour

// settings is the configuration shared by serve, dev, `config check` and the admin
// commands. Each command defines the groups of flags it reads; the rest stay zero.
type settings struct {
	configFile string

	// store group
	store string

	// keys group
	keyFile string

	// provider group
	provider          string
	authURL, tokenURL string
	apiURL            string
	scopes            string
	clientIDFile      string
	clientSecretFile  string
	publicURL         string
	allowedReturnURLs []string
	linkTTL           time.Duration
	appName           string

	// serve group
	listen          string
	metricsListen   string
	retention       time.Duration
	pruneInterval   time.Duration
	shutdownTimeout time.Duration
	refreshRate     uint64
	refreshBurst    uint64
	maxRefreshes    uint64
	refreshTimeout  time.Duration
	leaseTTL        time.Duration
	rejectCooldown  time.Duration
	logFormat       string
	logLevel        string
	webhookSettings

	// Resolved by check.
	prov         tokenkeeper.Provider
	public       *url.URL
	clientID     string
	clientSecret tokenkeeper.Secret

	f      *flagSet
	groups group
	lookup func(string) (string, bool)
}

// group is a set of flag groups.
type group int

const (
	groupStore group = 1 << iota
	groupKeys
	groupProvider
	groupServe
)

// newSettings defines the flags of groups on a new flagSet for the command name.
func newSettings(name string, groups group) *settings {
	s := &settings{f: newFlagSet(name, envPrefix), groups: groups}
	f := s.f
	f.stringVar(&s.configFile, "config", "",
		"read settings from the YAML `FILE` (keys are flag names); flags and variables win")
	if groups&groupStore != 0 {
		f.stringVar(&s.store, "store", "sqlite:tokenkeeper.db",
			"`STORE`: sqlite:PATH (embedded) or a postgres:// URL")
	}
	if groups&groupKeys != 0 {
		f.stringVar(&s.keyFile, "key-file", "",
			"the keyset `FILE` that seals tokens at rest (make one with `tokenkeeper keys generate`)")
	}
	if groups&groupProvider != 0 {
		f.choiceVar(&s.provider, "provider", tokenkeeper.ProviderPleo,
			[]string{tokenkeeper.ProviderPleo, tokenkeeper.ProviderPleoStaging, tokenkeeper.ProviderCustom},
			"provider `PROFILE`: pleo, pleo-staging or custom")
		f.stringVar(&s.authURL, "auth-url", "", "override the profile's authorization endpoint `URL`")
		f.stringVar(&s.tokenURL, "token-url", "", "override the profile's token endpoint `URL`")
		f.stringVar(&s.apiURL, "api-url", "", "override the profile's API base `URL`")
		f.stringVar(&s.scopes, "scopes", "", "`SCOPES` to ask for, separated by spaces; empty asks for the client's defaults")
		f.stringVar(&s.clientIDFile, "client-id-file", "",
			"read the OAuth client id from `FILE` instead of $"+envClientID)
		f.stringVar(&s.clientSecretFile, "client-secret-file", "",
			"read the OAuth client secret from `FILE` instead of $"+envClientSecret)
		f.stringVar(&s.publicURL, "public-url", "",
			"the service's public base `URL`; the redirect URI is URL/oauth/callback")
		listVar(f, &s.allowedReturnURLs, "allowed-return-url", parseReturnPrefix, false,
			"an absolute `URL` prefix that connect flows may return to; repeatable")
		f.durationVar(&s.linkTTL, "connect-link-ttl", 15*time.Minute,
			"how long a connect link stays usable, a `DURATION` of at most 168h")
		f.stringVar(&s.appName, "app-name", "", "the app's `NAME` as the connect pages show it to the customer; empty says \"This app\"")
	}
	if groups&groupServe != 0 {
		f.stringVar(&s.listen, "listen", ":8080", "`ADDR` to listen on; port 0 picks a free port")
		f.stringVar(&s.metricsListen, "metrics-listen", "",
			"serve /metrics on this `ADDR` only (say 127.0.0.1:9100), not on --listen; empty serves it on --listen")
		f.durationVar(&s.retention, "retention", defaultRetention,
			"remove disconnected and reconnect-required connections after this `DURATION`; 0 never")
		f.durationVar(&s.pruneInterval, "prune-interval", time.Hour, "run retention every `DURATION`")
		f.durationVar(&s.shutdownTimeout, "shutdown-timeout", 30*time.Second,
			"on SIGTERM, wait this `DURATION` for requests and refreshes in flight")
		f.uint64Var(&s.refreshRate, "refresh-rate", 20,
			"send at most `N` refresh requests a second from this replica (each replica has its own budget)")
		f.uint64Var(&s.refreshBurst, "refresh-burst", 20, "let up to `N` refresh requests go at once before --refresh-rate applies")
		f.uint64Var(&s.maxRefreshes, "max-concurrent-refreshes", 8, "have at most `N` refreshes in flight from this replica")
		f.durationVar(&s.refreshTimeout, "refresh-timeout", 30*time.Second, "give up on one refresh request after `DURATION`")
		f.durationVar(&s.leaseTTL, "lease-ttl", 0,
			"a refresh lease lasts `DURATION` unless renewed (every third of it); at least twice --refresh-timeout; 0 means 3 x --refresh-timeout")
		f.durationVar(&s.rejectCooldown, "reject-cooldown", 30*time.Second,
			"a token issued for a refused one and refused again within `DURATION` costs no second refresh (the 401 storm guard); 0 disables the guard")
		f.choiceVar(&s.logFormat, "log-format", "text", []string{"text", "json"}, "log `FORMAT` on stderr: text or json")
		f.choiceVar(&s.logLevel, "log-level", "info", []string{"debug", "info", "warn", "error"}, "log `LEVEL`")
		s.webhookFlags(f)
	}
	return s
}

// knownSetting reports whether name is a setting of any command, so that a config file
// shared by serve and the admin commands is not refused by a command that reads only part
// of it.
func knownSetting(name string) bool {
	all := newSettings("all", groupStore|groupKeys|groupProvider|groupServe)
	return all.f.fs.Lookup(name) != nil
}

// parseReturnPrefix checks an --allowed-return-url.
func parseReturnPrefix(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("want an absolute http(s) URL")
	}
	return s, nil
}

// parse reads the command line, the environment and the config file, in that order of
// precedence, and checks the result. It returns the positional arguments, of which the
// command wants exactly len(names).
func (s *settings) parse(args []string, names ...string) ([]string, error) {
	s.f.lookupEnv = s.lookup
	pos, err := s.f.parseArgs(args, names...)
	if err != nil {
		return nil, err
	}
	if s.configFile != "" {
		values, err := readConfigFile(s.configFile)
		if err != nil {
			return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %w", s.f.source("config"), err)}
		}
		if err := s.f.applyFile(s.configFile, values, knownSetting); err != nil {
			return nil, err
		}
	}
	return pos, s.check()
}

// readConfigFile reads a YAML mapping of setting names to scalars or lists of scalars.
func readConfigFile(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string][]string{}, nil
		}
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping of setting names to values")
	}
	values := map[string][]string{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if _, dup := values[name]; dup {
			return nil, fmt.Errorf("line %d: %q is set twice", k.Line, name)
		}
		switch v.Kind {
		case yaml.ScalarNode:
			values[name] = []string{v.Value}
		case yaml.SequenceNode:
			items := []string{}
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: %s: want a list of plain values", it.Line, name)
				}
				items = append(items, it.Value)
			}
			values[name] = items
		default:
			return nil, fmt.Errorf("line %d: %s: want a plain value or a list", v.Line, name)
		}
	}
	return values, nil
}

// check validates what the flags' parsers cannot, and resolves the provider, the public
// URL and the client credentials. Each message names the setting and where it came from.
func (s *settings) check() error {
	bad := func(name, format string, args ...any) error {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: "+format, append([]any{s.f.source(name)}, args...)...)}
	}
	if s.groups&groupStore != 0 {
		if _, _, err := parseStore(s.store); err != nil {
			return bad("store", "%v", err)
		}
	}
	if s.groups&groupServe != 0 {
		if err := checkListen(s.listen); err != nil {
			return bad("listen", "%v", err)
		}
		if s.metricsListen != "" {
			if err := checkListen(s.metricsListen); err != nil {
				return bad("metrics-listen", "%v", err)
			}
		}
		if s.retention < 0 {
			return bad("retention", "%s is negative", s.retention)
		}
		if s.pruneInterval < time.Minute {
			return bad("prune-interval", "%s is shorter than a minute", s.pruneInterval)
		}
		if s.shutdownTimeout <= 0 {
			return bad("shutdown-timeout", "must be positive")
		}
		for name, v := range map[string]uint64{"refresh-rate": s.refreshRate, "refresh-burst": s.refreshBurst, "max-concurrent-refreshes": s.maxRefreshes} {
			if v < 1 || v > 1e6 {
				return bad(name, "%d is not between 1 and 1000000", v)
			}
		}
		if s.refreshTimeout < time.Second {
			return bad("refresh-timeout", "%s is shorter than a second", s.refreshTimeout)
		}
		if s.leaseTTL != 0 && s.leaseTTL < 2*s.refreshTimeout {
			return bad("lease-ttl", "%s is less than twice --refresh-timeout (%s): a refresh is sent only while its lease surely outlasts the request", s.leaseTTL, s.refreshTimeout)
		}
		if s.rejectCooldown < 0 {
			return bad("reject-cooldown", "%s is negative", s.rejectCooldown)
		}
	}
	if s.groups&groupProvider != 0 {
		if err := s.checkProvider(bad); err != nil {
			return err
		}
	}
	if s.groups&groupServe != 0 {
		if err := s.checkWebhooks(bad); err != nil {
			return err
		}
	}
	return nil
}

func (s *settings) checkProvider(bad func(name, format string, args ...any) error) error {
	switch s.provider {
	case tokenkeeper.ProviderPleo:
		s.prov = tokenkeeper.PleoProvider()
	case tokenkeeper.ProviderPleoStaging:
		s.prov = tokenkeeper.PleoStagingProvider()
	default:
		s.prov = tokenkeeper.Provider{Name: tokenkeeper.ProviderCustom}
	}
	for _, o := range []struct {
		name string
		v    string
		dst  *string
	}{{"auth-url", s.authURL, &s.prov.AuthURL}, {"token-url", s.tokenURL, &s.prov.TokenURL}, {"api-url", s.apiURL, &s.prov.APIURL}} {
		if o.v == "" {
			if s.provider == tokenkeeper.ProviderCustom {
				return bad(o.name, "is required with --provider custom")
			}
			continue
		}
		if err := checkHTTPURL(o.v); err != nil {
			return bad(o.name, "%v", err)
		}
		*o.dst = strings.TrimSuffix(o.v, "/")
	}
	if s.linkTTL <= 0 || s.linkTTL > 7*24*time.Hour {
		return bad("connect-link-ttl", "%s is not between 1s and 168h", s.linkTTL)
	}
	if s.publicURL != "" {
		if err := checkHTTPURL(s.publicURL); err != nil {
			return bad("public-url", "%v", err)
		}
		u, _ := url.Parse(strings.TrimSuffix(s.publicURL, "/"))
		if u.RawQuery != "" || u.Fragment != "" {
			return bad("public-url", "%q has a query or fragment", s.publicURL)
		}
		s.public = u
	}
	id, err := s.credential(envClientID, "client-id-file")
	if err != nil {
		return err
	}
	secret, err := s.credential(envClientSecret, "client-secret-file")
	if err != nil {
		return err
	}
	s.clientID, s.clientSecret = id, tokenkeeper.NewSecret(secret)
	return nil
}

// credential reads a client credential from its variable or from the file its flag names;
// setting both is an error. An empty result is left for the command to require.
func (s *settings) credential(env, fileFlag string) (string, error) {
	fromEnv, _ := s.lookupEnv(env)
	path := map[string]string{"client-id-file": s.clientIDFile, "client-secret-file": s.clientSecretFile}[fileFlag]
	switch {
	case fromEnv != "" && path != "":
		return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("both $%s and %s are set; use one", env, s.f.source(fileFlag))}
	case path != "":
		data, err := os.ReadFile(path)
		if err != nil {
			return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source(fileFlag), err)}
		}
		v := strings.TrimSpace(string(data))
		if v == "" {
			return "", &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: the file is empty", s.f.source(fileFlag))}
		}
		return v, nil
	}
	return strings.TrimSpace(fromEnv), nil
}

func (s *settings) lookupEnv(name string) (string, bool) {
	if s.lookup != nil {
		return s.lookup(name)
	}
	return os.LookupEnv(name)
}

// requireClient fails unless the client credentials are set: serve and anything that
// refreshes needs them.
func (s *settings) requireClient() error {
	if s.clientID == "" {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("the OAuth client id is missing: set $%s or --client-id-file", envClientID)}
	}
	if s.clientSecret.IsZero() {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("the OAuth client secret is missing: set $%s or --client-secret-file", envClientSecret)}
	}
	return nil
}

// requirePublicURL fails unless --public-url is set.
func (s *settings) requirePublicURL() error {
	if s.public == nil {
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--public-url (TOKENKEEPER_PUBLIC_URL) is required: the redirect URI derives from it")}
	}
	return nil
}

// requireKeyFile fails unless --key-file is set.
func (s *settings) requireKeyFile() error {
	if s.keyFile == "" {
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--key-file (TOKENKEEPER_KEY_FILE) is required: tokens are sealed at rest with it; make one with `tokenkeeper keys generate --out FILE`")}
	}
	return nil
}

// scopeList returns the scopes to ask for.
func (s *settings) scopeList() []string { return strings.Fields(s.scopes) }

// redirectURL is the OAuth redirect URI.
func (s *settings) redirectURL() string { return s.public.String() + "/oauth/callback" }

// parseStore splits a --store value into its kind ("sqlite" or "postgres") and location.
func parseStore(v string) (kind, where string, err error) {
	switch {
	case strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(v, "sqlite:")
		if path == "" {
			return "", "", errors.New("sqlite: needs a file path, as in sqlite:/var/lib/tokenkeeper/tokenkeeper.db")
		}
		return "sqlite", path, nil
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if _, err := url.Parse(v); err != nil {
			return "", "", errors.New("not a valid postgres:// URL")
		}
		return "postgres", v, nil
	}
	return "", "", fmt.Errorf("%q is neither sqlite:PATH nor a postgres:// URL", redactStore(v))
}

// redactStore hides a password in a store URL, for messages.
func redactStore(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Scheme == "sqlite" {
		if strings.HasPrefix(v, "postgres") || strings.Contains(v, "password") {
			return "(a database URL that cannot be shown)"
		}
		return v
	}
	q, changed := u.Query(), false
	for k := range q {
		if strings.EqualFold(k, "password") {
			q[k], changed = []string{"xxxxx"}, true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

func checkHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", v)
	}
	if u.User != nil {
		return fmt.Errorf("%q holds credentials; they do not belong in a URL", u.Redacted())
	}
	return nil
}

func checkListen(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("%q is not a HOST:PORT address (use :8080, or port 0 for a free port)", addr)
	}
	return nil
}
