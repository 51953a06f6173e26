package proxy_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// The benchmarks here measure the proxy's throughput and added latency over
// loopback HTTP, side by side in one run (docs/benchmarks.md, "Service",
// records the figures). Compare them as ratios within a run; never assert
// them in a test.

// benchBody is the upstream's constant small JSON answer.
const benchBody = `{"data":[{"id":"e1","firstName":"Astrid","lastName":"Jensen"}],"pagination":{"hasNextPage":false}}`

// benchParallelism is b.SetParallelism for every variant of BenchmarkProxy:
// benchParallelism × GOMAXPROCS client goroutines (8 on the 2-core
// development machine), each with one request in flight. Clients, proxy and
// upstream share the machine's cores.
const benchParallelism = 4

// pooled returns a transport that keeps enough idle connections for
// RunParallel, so the benchmark measures proxying, not TCP handshakes.
func pooled() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	return t
}

// proxyVariant is one way to reach the upstream's GET /v2/employees.
type proxyVariant struct {
	name string
	url  string
}

// proxyVariants starts the upstream and one front server per variant, all
// sharing one pooled transport to the upstream unless said otherwise:
//
//   - Direct: the client calls the upstream, a constant small JSON answer.
//   - ReverseProxy: a plain httputil.ReverseProxy (Rewrite to the target),
//     the baseline.
//   - ReverseProxyPooled: ReverseProxy with a BufferPool, as Proxy has;
//     without one, ReverseProxy allocates a 32 KiB copy buffer per request.
//   - ReverseProxyFlushing: ReverseProxyPooled with FlushInterval -1, as
//     Proxy configures it: a flush after every write, and a timer that
//     flushes the headers at once, even for a response of known length.
//   - Proxy: Proxy.Forward with a constant bearer header (the keeper not
//     measured).
//   - ProxyKeeper: Proxy.Forward with a real keeper's Transport (its cached
//     token; SQLite behind it).
//   - HTTPAPI: the real route /v1/connections/{id}/proxy/{path...} of
//     httpapi.Server as cmd/tokenkeeper serve wires it (the API key's record
//     cached, the key verified, metrics, security headers) in front of
//     ProxyKeeper's proxy with a pooled upstream transport.
//   - HTTPAPINoKeyCache: HTTPAPI reading the key's record from SQLite on
//     every request (APIKeyCacheTTL -1).
//   - HTTPAPIDefaultTransport: HTTPAPI over http.DefaultTransport, which
//     keeps 2 idle connections per host (how serve was wired before).
//
// The keeper is built as in production (real clock, Info logger that
// discards, metrics); every request carries the same API key, which the
// proxies drop.
func proxyVariants(b *testing.B) (variants []proxyVariant, key tokenkeeper.Secret) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchBody)
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	upstreamTransport := pooled()
	b.Cleanup(upstreamTransport.CloseIdleConnections)

	serve := func(h http.Handler) string {
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		return srv.URL
	}
	constant := func(tokenkeeper.ConnectionID) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer constant-benchmark-token")
			return upstreamTransport.RoundTrip(r)
		})
	}
	viaProxy := func(p *proxy.Proxy) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.Forward(w, r, "acme", r.URL.EscapedPath()[len("/connections/acme/proxy"):])
		})
	}

	e := newEnv(b)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil)) // Info, as in production
	client := emulator.DemoClient()
	prov := tokenkeeper.CustomProvider(e.srv.URL+"/oauth/authorize", e.srv.URL+"/oauth/token", e.srv.APIURL)
	k, err := keeper.New(keeper.Config{
		Store: e.store, Sealer: e.ring, Provider: prov, ClientID: client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret), Logger: log, Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	e.k = k // e.connect hands the grant to it
	e.connect("acme")
	key, rec, err := tokenkeeper.NewAPIKey("bench", []tokenkeeper.Scope{tokenkeeper.ScopeProxy}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := e.store.CreateAPIKey(b.Context(), rec); err != nil {
		b.Fatal(err)
	}
	flow, err := connect.New(connect.Config{
		Provider: prov, ClientID: client.ID, ClientSecret: tokenkeeper.NewSecret(client.Secret),
		RedirectURL: client.RedirectURIs[0], Store: e.store, Sealer: e.ring, Keeper: k, Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	api := func(base http.RoundTripper, keyCacheTTL time.Duration) string {
		p := &proxy.Proxy{Target: target, Logger: log,
			Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return k.Transport(id, base) }}
		reg := prometheus.NewRegistry()
		public, _ := url.Parse("https://tk.example")
		s, err := httpapi.New(httpapi.Config{
			Keeper: k, Flow: flow, Proxy: p, Store: e.store, APIKeys: e.store, Audit: e.store,
			PublicURL: public, Registerer: reg, Gatherer: reg, Logger: log, APIKeyCacheTTL: keyCacheTTL,
		})
		if err != nil {
			b.Fatal(err)
		}
		return serve(s) + "/v1/connections/acme/proxy/v2/employees"
	}
	keeperProxy := &proxy.Proxy{Target: target, Logger: log, Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper {
		return k.Transport(id, upstreamTransport)
	}}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: upstreamTransport,
	}
	rpPooled := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:  upstreamTransport,
		BufferPool: &bufferPool{},
	}
	rpFlushing := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport:     upstreamTransport,
		BufferPool:    &bufferPool{},
		FlushInterval: -1,
	}
	return []proxyVariant{
		{"Direct", up.URL + "/v2/employees"},
		{"ReverseProxy", serve(rp) + "/v2/employees"},
		{"ReverseProxyPooled", serve(rpPooled) + "/v2/employees"},
		{"ReverseProxyFlushing", serve(rpFlushing) + "/v2/employees"},
		{"Proxy", serve(viaProxy(&proxy.Proxy{Target: target, Transport: constant, Logger: log})) + "/connections/acme/proxy/v2/employees"},
		{"ProxyKeeper", serve(viaProxy(keeperProxy)) + "/connections/acme/proxy/v2/employees"},
		{"HTTPAPI", api(upstreamTransport, 0)},
		{"HTTPAPINoKeyCache", api(upstreamTransport, -1)},
		{"HTTPAPIDefaultTransport", api(nil, 0)},
	}, key
}

// BenchmarkProxy compares, over loopback with benchParallelism ×
// GOMAXPROCS keep-alive clients, a GET answered by a constant small JSON
// through each of proxyVariants, reporting requests/s, the client's p50
// and p99 latency in µs, and the process's CPU time per request (clients,
// proxy and upstream together).
func BenchmarkProxy(b *testing.B) {
	variants, key := proxyVariants(b)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) { runClients(b, v.url, key, benchParallelism) })
	}
}

// BenchmarkProxy_Serial is BenchmarkProxy with one client and one request
// in flight: the latency each hop adds when nothing queues.
func BenchmarkProxy_Serial(b *testing.B) {
	variants, key := proxyVariants(b)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) { runClients(b, v.url, key, 0) })
	}
}

// runClients GETs u with the API key and checks each answer: from
// parallelism × GOMAXPROCS goroutines, or from one when parallelism is 0.
// It reports requests/s and the latency percentiles.
func runClients(b *testing.B, u string, key tokenkeeper.Secret, parallelism int) {
	client := &http.Client{Transport: pooled(), Timeout: 30 * time.Second}
	b.Cleanup(client.CloseIdleConnections)
	var m meter
	work := func(next func() bool) {
		rq, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			b.Error(err)
			return
		}
		rq.Header.Set("Authorization", "Bearer "+key.Reveal())
		mine := make([]time.Duration, 0, 4096)
		defer func() { m.add(mine) }()
		for next() {
			start := time.Now()
			resp, err := client.Do(rq)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(start))
			if resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	m.start()
	if parallelism == 0 {
		work(b.Loop)
	} else {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) { work(pb.Next) })
	}
	b.StopTimer()
	m.report(b)
}

// bufferPool recycles ReverseProxy's 32 KiB copy buffers, as Proxy does.
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

// meter collects the per-request latencies of the client goroutines (each
// keeps its own slice and adds it once, at its end) and the process's CPU
// time over the run.
type meter struct {
	cpu time.Duration // at start
	mu  sync.Mutex
	all []time.Duration
}

func (m *meter) start() { m.cpu = cpuTime() }

func (m *meter) add(d []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = append(m.all, d...)
}

// report reports requests/s over the timed run, the median and 99th
// percentile latency in µs, and cpu-ns/op: the user and system CPU time of
// the whole process (clients, proxies, upstream, GC) per request.
func (m *meter) report(b *testing.B) {
	if len(m.all) == 0 || b.N == 0 {
		return
	}
	cpu := cpuTime() - m.cpu
	slices.Sort(m.all)
	at := func(p float64) float64 {
		return float64(m.all[int(p*float64(len(m.all)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the user plus system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
