package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

const serveUsage = `Usage: tokenkeeper serve [flags]

Runs the token service: the HTTP API under /v1 (tokens, connections, connect sessions,
the proxy to the provider's API, API keys, the audit trail, the event log, webhook
endpoints), the OAuth redirect URI /oauth/callback, /healthz, /readyz and /metrics, the
refresh scheduler, retention, and signed webhooks from the store's outbox.
It prints one line on stdout with the URL it listens on, logs on stderr, and on SIGINT
or SIGTERM stops accepting, lets requests and refreshes in flight finish and persist,
then exits.

The OAuth client credentials come from $TOKENKEEPER_CLIENT_ID and
$TOKENKEEPER_CLIENT_SECRET, or from the files --client-id-file and --client-secret-file
name: never from a flag, so that they stay out of ps.

Settings come from flags, then TOKENKEEPER_* variables, then the --config file (YAML
whose keys are the flag names), in that order of precedence. Invalid settings stop the
service at start with a message naming the setting; "tokenkeeper config check" checks
them without starting.

Flags, each with the environment variable that sets it when the flag is absent:
`

// runServe runs `tokenkeeper serve` until ctx is cancelled.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper serve", groupStore|groupKeys|groupProvider|groupServe)
	if _, err := s.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, serveUsage)
			s.f.printFlags(stdout)
		}
		return err
	}
	for _, req := range []func() error{s.requireClient, s.requirePublicURL} {
		if err := req(); err != nil {
			return err
		}
	}
	kf, err := loadKeyFile(s)
	if err != nil {
		return err
	}
	log := newLogger(stderr, s.logFormat, s.logLevel)
	svc, err := startService(ctx, s, kf, log, serviceOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tokenkeeper serving on %s (public URL %s)\n", svc.url, s.public)
	return svc.wait(ctx)
}

// serviceOptions adjusts a service for dev mode and tests.
type serviceOptions struct {
	// extra, if set, is tried before the API for every request: it returns false to pass
	// the request on. dev mounts its helper pages here.
	extra func(w http.ResponseWriter, r *http.Request) bool
	// events receives the keeper's events after they are logged.
	events tokenkeeper.EventHandler
	// keeper adjusts the keeper's configuration.
	keeper func(*keeper.Config)
}

// service is a running `serve`: the store, the keeper and its scheduler, and the HTTP
// server.
type service struct {
	url    string
	store  backend
	keeper *keeper.Keeper
	flow   *connect.Flow
	events *eventSystem
	srv    *http.Server
	ln     net.Listener

	// metrics serves /metrics alone on --metrics-listen; nil when it is empty.
	metrics    *http.Server
	metricsURL string
	log        *slog.Logger
	s          *settings

	runCancel context.CancelFunc
	runDone   chan error
	watchDone chan struct{}
	// healthDone is closed when the store health checks have stopped.
	healthDone chan struct{}
	serveErr   chan error
	handlers   handlerGate

	mu       sync.Mutex
	fresh    map[net.Conn]bool // connections that have not sent a request yet
	stopping bool
}

// track keeps the set of connections that have not sent a request yet (a browser's
// speculative preconnect). Shutdown closes them at once: they hold no request, and
// http.Server.Shutdown would otherwise wait five seconds for each to say something.
func (svc *service) track(c net.Conn, state http.ConnState) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	switch state {
	case http.StateNew:
		if svc.stopping {
			c.Close()
			return
		}
		if svc.fresh == nil {
			svc.fresh = map[net.Conn]bool{}
		}
		svc.fresh[c] = true
	default:
		delete(svc.fresh, c)
	}
}

// closeFresh closes the connections that never sent a request.
func (svc *service) closeFresh() {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	svc.stopping = true
	for c := range svc.fresh {
		c.Close()
	}
	svc.fresh = nil
}

// startService opens the store, starts the keeper's scheduler, the key file's watcher and
// the HTTP server, and returns once the listener is bound. kf is the keyset loaded from
// --key-file (loadKeyFile): the watcher reloads the file whenever its content differs
// from the bytes kf was loaded from.
func startService(ctx context.Context, s *settings, kf *keyFile, log *slog.Logger, opts serviceOptions) (svc *service, err error) {
	keys := kf.keys
	st, err := openStore(ctx, s, createStore)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	watcher, err := newKeyWatcher(kf, log, reg)
	if err != nil {
		return nil, err
	}
	health, err := newStoreHealth(st, log, reg)
	if err != nil {
		return nil, err
	}

	seams := seamsFrom(ctx)
	kcfg := keeper.Config{
		Registerer:             reg,
		Retention:              s.retention,
		PruneInterval:          s.pruneInterval,
		RefreshRate:            float64(s.refreshRate),
		RefreshBurst:           int(s.refreshBurst),
		MaxConcurrentRefreshes: int(s.maxRefreshes),
		RefreshTimeout:         s.refreshTimeout,
		LeaseTTL:               s.leaseTTL,
		RejectCooldown:         s.rejectCooldown,
		Events:                 eventLogger{log: log, next: opts.events},
	}
	if s.rejectCooldown == 0 {
		kcfg.RejectCooldown = -1 // the keeper's "disabled"; its 0 is the default
	}
	if seams.now != nil {
		kcfg.Now = seams.now
	}
	events, err := newEventSystem(ctx, s, st, keys, log, reg, seams.now)
	if err != nil {
		return nil, err
	}
	kcfg.Events = eventLogger{log: log, next: handlers{events.recorder, opts.events}}
	dash := newDashboard(st, events, seams.now)
	if seams.keeper != nil {
		seams.keeper(&kcfg)
	}
	if opts.keeper != nil {
		opts.keeper(&kcfg)
	}
	k, err := newKeeper(s, st, keys, log, kcfg)
	if err != nil {
		return nil, fmt.Errorf("start the keeper: %w", err)
	}
	flow, err := newFlow(s, st, keys, k, log)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("start the connect flow: %w", err)
	}
	target, _ := url.Parse(s.prov.APIURL)
	upstream := upstreamTransport()
	px := &proxy.Proxy{
		Target:    target,
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return k.Transport(id, upstream) },
		Logger:    log,
	}
	pages, err := connectPages(s, log)
	if err != nil {
		k.Close()
		return nil, err
	}
	api, err := httpapi.New(httpapi.Config{
		Keeper:     k,
		Flow:       flow,
		Proxy:      px,
		Pages:      pages,
		Store:      st,
		APIKeys:    st,
		Audit:      st,
		Webhooks:   events.endpoints,
		Events:     st,
		PublicURL:  s.public,
		Retention:  s.retention,
		Ready:      readiness(watcher),
		Degraded:   health.degraded,
		Registerer: reg,
		Gatherer:   mainGatherer(s, reg),
		Logger:     log,
	})
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("start the HTTP API: %w", err)
	}
	var h http.Handler = api
	if opts.extra != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !opts.extra(w, r) {
				api.ServeHTTP(w, r)
			}
		})
	}
	if h, err = dash.mount(h, s, st, keys, k, flow, log); err != nil {
		k.Close()
		return nil, err
	}
	warnInsecurePublicURL(s.public, log)
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		k.Close()
		return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("listen"), err)}
	}
	svc = &service{
		url: "http://" + ln.Addr().String(), store: st, keeper: k, flow: flow, ln: ln, log: log, s: s, events: events,
		runDone: make(chan error, 1), serveErr: make(chan error, 2),
	}
	if s.metricsListen != "" {
		mln, err := net.Listen("tcp", s.metricsListen)
		if err != nil {
			ln.Close()
			k.Close()
			return nil, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("%s: %v", s.f.source("metrics-listen"), err)}
		}
		svc.metricsURL = "http://" + mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
		svc.metrics = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() {
			if err := svc.metrics.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				svc.serveErr <- err
			}
		}()
	}
	svc.srv = &http.Server{
		Handler:           svc.handlers.wrap(h),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	svc.runCancel = cancel
	svc.srv.ConnState = svc.track
	go func() { svc.runDone <- k.Run(runCtx) }()
	events.start(runCtx)
	if seams.beforeKeyWatch != nil {
		seams.beforeKeyWatch()
	}
	svc.watchDone = make(chan struct{})
	go func() { defer close(svc.watchDone); watcher.Run(runCtx, seams.keyPoll) }()
	svc.healthDone = make(chan struct{})
	go func() { defer close(svc.healthDone); health.Run(runCtx, seams.storePoll) }()
	go func() { svc.serveErr <- svc.srv.Serve(ln) }()
	log.Info("tokenkeeper started", "listen", svc.url, "public_url", s.public.String(), "store", redactStore(s.store),
		"provider", s.prov.Name, "api_url", s.prov.APIURL, "key_id", keys.PrimaryKeyID(),
		"retention", shortDuration(s.retention), "metrics", cmp.Or(svc.metricsURL, svc.url)+"/metrics")
	return svc, nil
}

// upstreamTransport is the proxy's connection pool to the provider's API: all proxied
// calls go to one host, so it keeps many idle connections to it (http.DefaultTransport
// keeps 2, and a busy proxy would open, and TLS-handshake, a new connection for most
// calls).
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// mainGatherer is what /metrics on --listen serves: the registry, unless --metrics-listen
// moves it elsewhere (then there is no /metrics on the public listener).
func mainGatherer(s *settings, reg *prometheus.Registry) prometheus.Gatherer {
	if s.metricsListen != "" {
		return nil
	}
	return reg
}

// wait serves until ctx is cancelled or the listener fails, then shuts down (shutdown).
func (svc *service) wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
		svc.log.Info("shutting down: draining requests and refreshes in flight")
	case err = <-svc.serveErr:
		svc.log.Error("the listener failed", "err", err)
	}
	return errors.Join(err, svc.shutdown())
}

// shutdown stops the service in an order that never pulls anything from under a running
// piece:
//
//  1. stop accepting and let the requests in flight finish, up to --shutdown-timeout;
//     past it, cut the connections of those still running, which cancels their
//     contexts (their handlers go on running until they notice);
//  2. stop the scheduler and the key watcher;
//  3. Keeper.Close: end the refreshes not sent yet, and wait for the sent ones to
//     persist their new token pair;
//  4. wait for every handler to return, cut or not: a cut handler may still be about to
//     read or write the store;
//  5. close the store.
//
// Cutting requests at the timeout is what the timeout is for, so it is logged at warn
// with the number cut, and is not an error: the process did what the signal asked, and
// no sent refresh was abandoned. Errors are the scheduler's, the listener's and the
// store's.
func (svc *service) shutdown() error {
	sctx, cancel := context.WithTimeout(context.Background(), svc.s.shutdownTimeout)
	defer cancel()
	var errs []error
	svc.closeFresh()
	if svc.metrics != nil {
		svc.metrics.Close() // nothing to drain: a scrape is repeated by the next one
	}
	cut := 0
	if err := svc.srv.Shutdown(sctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			cut = svc.handlers.running()
			svc.log.Warn("shutdown timeout: cutting the requests still in flight",
				"requests", cut, "shutdown_timeout", shortDuration(svc.s.shutdownTimeout))
		} else {
			errs = append(errs, fmt.Errorf("drain HTTP requests: %w", err))
		}
		svc.srv.Close()
	}
	svc.handlers.close()
	svc.runCancel()
	if err := <-svc.runDone; err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("scheduler: %w", err))
	}
	<-svc.watchDone
	<-svc.healthDone
	if err := svc.keeper.Close(); err != nil {
		errs = append(errs, fmt.Errorf("drain refreshes: %w", err))
	}
	svc.events.wait() // the dispatcher records the attempts in flight
	svc.handlers.wait(svc.log, svc.s.shutdownTimeout)
	if err := svc.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the store: %w", err))
	}
	switch {
	case len(errs) > 0:
	case cut > 0:
		svc.log.Warn("stopped; requests cut at the shutdown timeout", "requests", cut)
	default:
		svc.log.Info("stopped cleanly")
	}
	return errors.Join(errs...)
}

// handlerGate counts the HTTP handlers running, because http.Server.Close cuts
// connections without waiting for their handlers, and the store must outlive every one
// of them. Once closed it turns new requests away. The zero handlerGate is open; it is
// safe for concurrent use.
type handlerGate struct {
	mu     sync.Mutex
	closed bool
	n      int
	wg     sync.WaitGroup // Add only under mu while open, so every Add precedes Wait
}

// wrap counts h's calls, and answers 503 once the gate is closed.
func (g *handlerGate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.enter() {
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", strconv.Itoa(httpapi.RetryAfter))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"the service is shutting down"}}`+"\n")
			return
		}
		defer g.leave()
		h.ServeHTTP(w, r)
	})
}

func (g *handlerGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	g.wg.Add(1)
	return true
}

func (g *handlerGate) leave() {
	g.mu.Lock()
	g.n--
	g.mu.Unlock()
	g.wg.Done()
}

// running returns the number of handlers running.
func (g *handlerGate) running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// close turns new requests away.
func (g *handlerGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// wait waits for every handler to return, logging at warn every interval while some
// have not. The gate must be closed.
func (g *handlerGate) wait(log *slog.Logger, every time.Duration) {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			log.Warn("shutdown: waiting for requests to return before closing the store", "requests", g.running())
		}
	}
}

// readiness reports whether the key file holds the keyset in use (keyWatcher.Status):
// while it does not, a `keys rotate` may be about to seal under a key this process has
// not loaded. A store that does not answer is not a reason (storeHealth.degraded says
// so, with 200): every replica shares it.
func readiness(keys *keyWatcher) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := keys.Status(); err != nil {
			// A plain error, so that /readyz shows the whole reason and not only the
			// message of the first tokenkeeper.Error in its chain. It names the file and
			// the failure, never key material.
			return errors.New(err.Error())
		}
		return nil
	}
}

// warnInsecurePublicURL warns when browsers reach the service over plain HTTP from other
// machines: the connect flow's browser-binding cookie is Secure only under https, so it
// would cross the network in the clear. A loopback host (dev, tests) is fine.
func warnInsecurePublicURL(u *url.URL, log *slog.Logger) {
	if u == nil || u.Scheme != "http" {
		return
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || strings.HasSuffix(host, ".localhost") || ip != nil && ip.IsLoopback() {
		return
	}
	log.Warn("the public URL is plain http on a host other than this machine: the connect flow's browser-binding cookie cannot be Secure; "+
		"serve behind https and set --public-url to the https URL", "public_url", u.String())
}

// eventLogger logs every event at info (warn for the ones an operator must act on), then
// passes it on.
type eventLogger struct {
	log  *slog.Logger
	next tokenkeeper.EventHandler
}

func (l eventLogger) Handle(ctx context.Context, e tokenkeeper.Event) {
	level := slog.LevelInfo
	switch e.Type {
	case tokenkeeper.EventReconnectRequired, tokenkeeper.EventClientRejected, tokenkeeper.EventDegraded:
		level = slog.LevelWarn
	}
	l.log.Log(ctx, level, "connection "+string(e.Type), "connection", e.ConnectionID, "subject", e.Subject, "reason", e.Reason)
	if l.next != nil {
		l.next.Handle(ctx, e)
	}
}

// seamsKey is the context key of testSeams: only this package's tests set it
// (withSeams), so that Main keeps one signature and no package state.
type seamsKey struct{}

// testSeams replaces what a test cannot wait for: the clock (the end-to-end test's service
// shares the emulator's clock) and the key file's poll interval, and opens the window
// between loading the key file and watching it.
type testSeams struct {
	now     func() time.Time
	keyPoll time.Duration
	// storePoll is how often the store's health is checked (storeHealthInterval if 0).
	storePoll time.Duration
	// beforeKeyWatch runs in startService after the store, the keeper and the API are
	// up and just before the key watcher starts: a key file rewritten there must still
	// be picked up.
	beforeKeyWatch func()
	// keeper adjusts the keeper's configuration where serve has no flag: the chaos tests'
	// replica processes name their owner and shorten the refresh timeout and lease TTL.
	keeper func(*keeper.Config)
}

func withSeams(ctx context.Context, s testSeams) context.Context {
	return context.WithValue(ctx, seamsKey{}, s)
}

func seamsFrom(ctx context.Context) testSeams {
	s, _ := ctx.Value(seamsKey{}).(testSeams)
	if s.keyPoll <= 0 {
		s.keyPoll = keyPollInterval
	}
	return s
}
