package httpapi_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// The benchmarks here measure the service's token endpoint over real
// loopback HTTP against a bare net/http handler, side by side in one run
// (docs/benchmarks.md, "Service", records the figures). Compare them as
// ratios within a run; never assert them in a test.

// benchParallelism is b.SetParallelism for every compared sub-benchmark:
// benchParallelism × GOMAXPROCS client goroutines (8 on the 2-core
// development machine), each with one request in flight. Client and server
// share the machine's cores.
const benchParallelism = 4

// benchService is the HTTP API as cmd/tokenkeeper serve wires it, not as
// the tests do: a keeper on a real SQLite file with the real clock and a
// JSON logger at Info that discards, metrics registered, API keys read from
// the store on every request, against a real emulator.
type benchService struct {
	srv   *emulator.Server
	store *sqlite.Store
	k     *keeper.Keeper
	flow  *connect.Flow
	px    *proxy.Proxy
	log   *slog.Logger
}

func newBenchService(b *testing.B) *benchService {
	b.Helper()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	s := &benchService{srv: srv}
	s.store, err = sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "tokenkeeper.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.store.Close() })
	keyset, err := seal.Generate()
	if err != nil {
		b.Fatal(err)
	}
	ks, err := seal.Parse(keyset)
	if err != nil {
		b.Fatal(err)
	}
	ring := seal.NewKeyring(ks)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil)) // Info, as in production
	reg := prometheus.NewRegistry()
	client := emulator.DemoClient()
	prov := tokenkeeper.CustomProvider(srv.URL+"/oauth/authorize", srv.URL+"/oauth/token", srv.APIURL)
	s.k, err = keeper.New(keeper.Config{
		Store: s.store, Sealer: ring, Provider: prov, ClientID: client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret), Logger: log, Registerer: reg,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.k.Close() })
	s.log = log
	s.flow, err = connect.New(connect.Config{
		Provider: prov, ClientID: client.ID, ClientSecret: tokenkeeper.NewSecret(client.Secret),
		RedirectURL: client.RedirectURIs[0], Scopes: []string{"users:read"},
		Store: s.store, Sealer: ring, Keeper: s.k, Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	target, _ := url.Parse(srv.APIURL)
	s.px = &proxy.Proxy{Target: target, Logger: log,
		Transport: func(id tokenkeeper.ConnectionID) http.RoundTripper { return s.k.Transport(id, nil) }}
	return s
}

// server starts the HTTP API on loopback with its own metrics registry,
// authenticating with keys.
func (s *benchService) server(b *testing.B, keyCacheTTL time.Duration) *httptest.Server {
	b.Helper()
	reg := prometheus.NewRegistry()
	public, _ := url.Parse("https://tk.example")
	api, err := httpapi.New(httpapi.Config{
		Keeper: s.k, Flow: s.flow, Proxy: s.px, Store: s.store, APIKeys: s.store, Audit: s.store,
		PublicURL: public, Retention: retention, Registerer: reg, Gatherer: reg, Logger: s.log,
		APIKeyCacheTTL: keyCacheTTL,
	})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(api)
	b.Cleanup(ts.Close)
	return ts
}

// key stores a new API key with scope and returns it and its record.
func (s *benchService) key(b *testing.B, scope tokenkeeper.Scope) (tokenkeeper.Secret, *tokenkeeper.APIKey) {
	b.Helper()
	key, rec, err := tokenkeeper.NewAPIKey("bench", []tokenkeeper.Scope{scope}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := s.store.CreateAPIKey(context.Background(), rec); err != nil {
		b.Fatal(err)
	}
	return key, rec
}

// connect runs the authorization code flow with PKCE against the emulator
// (auto-approve) and hands the grant to the keeper, which then serves the
// connection's token from memory.
func (s *benchService) connect(b *testing.B, id tokenkeeper.ConnectionID) {
	b.Helper()
	client := emulator.DemoClient()
	scopes := []string{"users:read"}
	cfg := oauth2.Config{ClientID: client.ID, ClientSecret: client.Secret, RedirectURL: client.RedirectURIs[0], Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: s.srv.URL + "/oauth/authorize", TokenURL: s.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	state := rand.Text()
	authURL := cfg.AuthCodeURL(state, oauth2.SetAuthURLParam("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:])),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
		b.Fatalf("authorize: status %d", resp.StatusCode)
	}
	sentAt := time.Now()
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		b.Fatal(err)
	}
	_, err = s.k.Connect(context.Background(), tokenkeeper.Grant{
		ConnectionID: id, Provider: tokenkeeper.ProviderCustom, Scopes: scopes,
		Tokens: tokenkeeper.TokenSet{
			AccessToken:  tokenkeeper.NewSecret(tok.AccessToken),
			RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken),
			Expiry:       sentAt.Add(time.Duration(tok.ExpiresIn) * time.Second),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTokenEndpoint measures POST /v1/connections/{id}/token over
// loopback HTTP:
//
//   - Bare: a net/http handler that answers with a constant copy of a real
//     token response (the same size); the ceiling on this machine.
//   - Token: the real Server as cmd/tokenkeeper serve wires it (the API key's
//     record cached for APIKeyCacheTTL, the key hashed and verified on every
//     request, the keeper's cached token, metrics, security headers).
//   - TokenNoKeyCache: Token reading the key's record from SQLite on every
//     request (APIKeyCacheTTL -1), to show what the cache saves.
//
// All use the same keep-alive client and parallelism, and report
// requests/s, the client's p50 and p99 latency in µs, and the process's CPU
// time per request (client and server together).
func BenchmarkTokenEndpoint(b *testing.B) {
	s := newBenchService(b)
	const path = "/v1/connections/acme/token"
	s.connect(b, "acme")
	key, _ := s.key(b, tokenkeeper.ScopeTokens)
	svc := s.server(b, 0)
	nocache := s.server(b, -1)

	// The bare handler's body is a real answer of the endpoint.
	body := func() []byte {
		resp, err := http.DefaultClient.Do(benchTokenRequest(b, svc.URL+path, key))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("token: status %d, %v", resp.StatusCode, err)
		}
		return data
	}()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(bare.Close)

	b.Run("Bare", func(b *testing.B) { runTokenClients(b, bare.URL+path, key) })
	b.Run("Token", func(b *testing.B) { runTokenClients(b, svc.URL+path, key) })
	b.Run("TokenNoKeyCache", func(b *testing.B) { runTokenClients(b, nocache.URL+path, key) })
}

// benchTokenRequest returns a POST to u with the API key, as a service asks for
// a token.
func benchTokenRequest(b *testing.B, u string, key tokenkeeper.Secret) *http.Request {
	rq, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		b.Fatal(err)
	}
	rq.Header.Set("Authorization", "Bearer "+key.Reveal())
	return rq
}

// runTokenClients POSTs to u from benchParallelism × GOMAXPROCS keep-alive
// clients, each reusing its request, checks each answer, and reports.
func runTokenClients(b *testing.B, u string, key tokenkeeper.Secret) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024 // every client goroutine keeps its connection
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	b.Cleanup(tr.CloseIdleConnections)
	var m benchMeter
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	m.start()
	b.RunParallel(func(pb *testing.PB) {
		rq := benchTokenRequest(b, u, key)
		mine := make([]time.Duration, 0, 4096)
		defer func() { m.add(mine) }()
		for pb.Next() {
			start := time.Now()
			resp, err := client.Do(rq)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(start))
			if resp.StatusCode != http.StatusOK || n < 100 {
				b.Errorf("status %d, %d bytes", resp.StatusCode, n)
				return
			}
		}
	})
	b.StopTimer()
	m.report(b)
}

// benchMeter collects the per-request latencies of RunParallel's goroutines
// (each keeps its own slice and adds it once, at its end) and the process's
// CPU time over the run.
type benchMeter struct {
	cpu time.Duration // at start
	mu  sync.Mutex
	all []time.Duration
}

func (m *benchMeter) start() { m.cpu = benchCPUTime() }

func (m *benchMeter) add(d []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = append(m.all, d...)
}

// report reports requests/s over the timed run, the median and 99th
// percentile latency in µs, and cpu-ns/op: the user and system CPU time of
// the whole process (clients, servers, GC) per request.
func (m *benchMeter) report(b *testing.B) {
	if len(m.all) == 0 || b.N == 0 {
		return
	}
	cpu := benchCPUTime() - m.cpu
	slices.Sort(m.all)
	at := func(p float64) float64 {
		return float64(m.all[int(p*float64(len(m.all)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchCPUTime returns the user plus system CPU time of the process so far.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
