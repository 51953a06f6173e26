package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// The benchmarks check that the emulator is never the bottleneck of what tokenkeeper
// measures against it (docs/benchmarks.md records the figures). Each endpoint runs in two
// variants:
//
//   - handler: Handler().ServeHTTP with an httptest recorder, in-process. This is the
//     emulator's own cost (plus building the request and decoding the answer).
//   - loopback: real HTTP/1.1 to a NewServer on 127.0.0.1 through a keep-alive client.
//
// BenchmarkBaseline_ConstantJSON is the loopback ceiling on the same machine: a bare
// net/http handler with a constant body, behind the same client. Compare figures from one
// run, as ratios; never assert them in a test.

// loopbackParallelism is the RunParallel multiplier for loopback variants: more client
// goroutines than cores, so that the server is kept busy while clients wait on sockets.
const loopbackParallelism = 4

// baselineBody is about the size of a GET /v1/introspect answer.
const baselineBody = `{"authMethod":"OAUTH2","clientId":"test-client","scope":"export-jobs:read users:read",` +
	`"applicationName":"Test App","subjectURN":"urn:pleo:company:8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a"}` + "\n"

// loopbackClient is a keep-alive client with enough idle connections for every parallel
// goroutine, which does not follow redirects and ignores proxy settings.
func loopbackClient(b *testing.B) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// benchVariants runs bench in-process ("handler") and over loopback HTTP ("loopback"),
// each against a fresh auto-approving emulator with testClient, so that the state a run
// leaves behind (rotated tokens are kept for reuse detection) is bounded by its b.N.
// keep is the emulator, for retained-memory measurements.
func benchVariants(b *testing.B, bench func(b *testing.B, do doFunc, base string, parallelism int, keep any)) {
	b.Run("handler", func(b *testing.B) {
		e, err := emulator.New(emulator.Config{Clients: []emulator.Client{testClient}, AutoApprove: true})
		if err != nil {
			b.Fatal(err)
		}
		bench(b, inProcess(e.Handler()), fuzzBase, 1, e)
	})
	b.Run("loopback", func(b *testing.B) {
		srv := startServer(b, emulator.Config{AutoApprove: true})
		b.SetParallelism(loopbackParallelism)
		bench(b, loopbackClient(b).Do, srv.URL, loopbackParallelism, srv)
	})
}

// connectPool connects one authorisation per RunParallel goroutine, before the timer
// starts, and returns a function that hands each goroutine its own.
func connectPool(b *testing.B, do doFunc, base string, parallelism int) func() tokens {
	pool := make([]tokens, parallelism*runtime.GOMAXPROCS(0))
	for i := range pool {
		pool[i] = connectVia(b, do, base, testClient)
	}
	var next atomic.Int64
	return func() tokens { return pool[next.Add(1)-1] }
}

// reportRate reports b.N per second of timed run as unit.
func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// drain reads and closes a response body, so the connection goes back to the pool.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkToken_Refresh measures refresh-token grants per second. Each goroutine owns
// one authorisation and chains refreshes with the rotated token, as a real client does.
// retained-B/refresh is the live heap the emulator keeps per refresh: every rotated-out
// token stays known, by design, so that its reuse is detected.
func BenchmarkToken_Refresh(b *testing.B) {
	benchVariants(b, func(b *testing.B, do doFunc, base string, parallelism int, keep any) {
		next := connectPool(b, do, base, parallelism)
		basic := rfcBasicHeader(testClient.ID, testClient.Secret)
		endpoint := base + "/oauth/token"
		heap0 := liveHeap()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rt := next().Refresh
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, endpoint,
					strings.NewReader("grant_type=refresh_token&refresh_token="+rt))
				req.Header.Set("Content-Type", formContentType)
				req.Header.Set("Authorization", basic)
				resp, err := do(req)
				if err != nil {
					b.Error(err)
					return
				}
				var tr struct {
					RefreshToken string `json:"refresh_token"`
				}
				err = json.NewDecoder(resp.Body).Decode(&tr)
				drain(resp)
				if resp.StatusCode != http.StatusOK || err != nil || tr.RefreshToken == "" {
					b.Errorf("refresh: status %d, decode error %v", resp.StatusCode, err)
					return
				}
				rt = tr.RefreshToken
			}
		})
		b.StopTimer()
		reportRate(b, "refreshes/s")
		if heap1 := liveHeap(); heap1 > heap0 {
			b.ReportMetric(float64(heap1-heap0)/float64(b.N), "retained-B/refresh")
		}
		runtime.KeepAlive(keep)
	})
}

// benchAPI measures GET path with a valid access token per goroutine.
func benchAPI(b *testing.B, path string) {
	benchVariants(b, func(b *testing.B, do doFunc, base string, parallelism int, _ any) {
		next := connectPool(b, do, base, parallelism)
		endpoint := base + path
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			bearer := "Bearer " + next().Access
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, endpoint, nil)
				req.Header.Set("Authorization", bearer)
				resp, err := do(req)
				if err != nil {
					b.Error(err)
					return
				}
				drain(resp)
				if resp.StatusCode != http.StatusOK {
					b.Errorf("GET %s: status %d", path, resp.StatusCode)
					return
				}
			}
		})
		b.StopTimer()
		reportRate(b, "calls/s")
	})
}

// BenchmarkAPI_Introspect measures GET /v1/introspect, the smallest authenticated call.
func BenchmarkAPI_Introspect(b *testing.B) { benchAPI(b, "/v1/introspect") }

// BenchmarkAPI_Employees measures GET /v2/employees (a page of 10 employees).
func BenchmarkAPI_Employees(b *testing.B) { benchAPI(b, "/v2/employees") }

// BenchmarkBaseline_ConstantJSON is the ceiling for a loopback HTTP call on this machine:
// a bare net/http handler answering a constant JSON body of the size of an introspect
// answer, behind the same client as the loopback variants. "get" has the shape of an API
// call, "post" the shape of a refresh (a form body, read by the handler).
func BenchmarkBaseline_ConstantJSON(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, baselineBody)
	}))
	defer srv.Close()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		b.Run(strings.ToLower(method), func(b *testing.B) {
			hc := loopbackClient(b)
			form := "grant_type=refresh_token&refresh_token=prt_" + strings.Repeat("x", 43)
			bearer := "Bearer pat_" + strings.Repeat("x", 43)
			b.SetParallelism(loopbackParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var body io.Reader
					if method == http.MethodPost {
						body = strings.NewReader(form)
					}
					req, _ := http.NewRequest(method, srv.URL+"/", body)
					req.Header.Set("Authorization", bearer)
					if body != nil {
						req.Header.Set("Content-Type", formContentType)
					}
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					drain(resp)
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			reportRate(b, "calls/s")
		})
	}
}
