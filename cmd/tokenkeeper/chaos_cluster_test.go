package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
)

// The refresh settings of the chaos replicas (serve's --refresh-timeout and --lease-ttl).
// A dead replica's lease blocks its connections for the lease TTL, and a SIGSTOP must
// outlast it, so both are short; the refresh timeout stays far above a refresh's time on
// this machine (milliseconds). The refresh rate is serve's default (20 a second per
// replica, taken only by the replica holding a connection's lease): three replicas get
// 60 a second, for 200 connections on a 7 s lifetime (about 36 a second).
const (
	chaosRefreshTimeout = 2 * time.Second
	chaosLeaseTTL       = 4 * time.Second
	chaosDrainGrace     = time.Second // keeper.Config's default, which serve uses
	chaosReplicaCount   = 3
	// killGapAllowance is how much later a connection may be refreshed for each SIGKILL
	// of a replica holding its lease: the lease TTL (nobody may take the lease before it
	// expires), up to 2s that the killer waits for a request to hold at the gate, and a
	// second for the next replica to notice.
	killGapAllowance = chaosLeaseTTL + 3*time.Second
)

// chaosOptions size one chaos run.
type chaosOptions struct {
	conns   int
	clients int
	// tokenTTL is the emulator's access-token lifetime, on the real clock: the replicas
	// are processes and read the real clock.
	tokenTTL time.Duration
	// load is how long the clients run.
	load time.Duration
	// pgBase is the maintenance database of the PostgreSQL server to use; "" means
	// the shared test server (postgresStore).
	pgBase string
}

// chaosSize returns the default sizes: the 3 replicas and 200 connections,
// hundreds of clients, and a load long enough for several expiry cycles; -short cuts
// them.
func chaosSize() chaosOptions {
	o := chaosOptions{conns: 200, clients: 200, tokenTTL: 7 * time.Second, load: 24 * time.Second}
	if testing.Short() {
		o.conns, o.clients, o.load = 60, 60, 15*time.Second
	}
	return o
}

// cluster is three `tokenkeeper serve` processes on one PostgreSQL database, each with a
// gateFront before the in-process emulator's token endpoint, and the clients.
type cluster struct {
	t     *testing.T
	o     chaosOptions
	emu   *emulator.Server
	emuH  http.Handler
	emuMu sync.RWMutex // forward: a targeted drop runs alone in the emulator
	store string
	db    *pgxpool.Pool
	key   string // an admin API key
	keys  string // the key file
	exe   string

	replicas []*chaosReplica
	fronts   []*gateFront
	kills    []killRecord // written by the test's goroutine only
	tokens   tokenLog

	ids       []string
	connChain map[string]int // connection → token family, set while connecting

	dropMu     sync.Mutex
	dropChains map[int]bool      // families whose next refresh (after dropFrom) loses its response
	dropFrom   time.Time         // no drop before this
	dropped    map[int]time.Time // families that lost a response, and when

	http *http.Client
	// avoid takes a replica out of the clients' rotation, as a load balancer does with one
	// that fails its health checks; busy counts the clients' requests in each replica.
	avoid [chaosReplicaCount]atomic.Bool
	busy  [chaosReplicaCount]atomic.Int64

	calls, tokenCalls, proxyCalls, deadRetries, unavailRetries, lostAnswers atomic.Int64
	failures                                                                atomic.Int64
	failMu                                                                  sync.Mutex
	failed                                                                  []string
	promMu                                                                  sync.Mutex
	promises                                                                map[string]time.Time // access token hash → expires_at served
	unavail                                                                 []time.Time          // when a 503 was answered
	served                                                                  []time.Time          // when a call succeeded
}

// chaosReplica is one replica's address and its current process. A restarted replica is
// a new process on the same address, with a new keeper owner.
type chaosReplica struct {
	i          int
	addr, base string
	logs       logtest.Buffer // stderr of every incarnation

	mu     sync.Mutex
	owner  string
	n      int
	cmd    *exec.Cmd
	exited chan struct{}
}

func (r *chaosReplica) currentOwner() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owner
}

func (r *chaosReplica) process() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd, r.exited
}

// newCluster makes the database, the emulator, the fronts, a key file and an admin key,
// and starts the replicas.
func newCluster(t *testing.T, o chaosOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, o: o, connChain: map[string]int{}, dropChains: map[int]bool{}, dropped: map[int]time.Time{},
		promises: map[string]time.Time{}}
	if o.pgBase != "" {
		c.store = postgresStoreOn(t, o.pgBase)
	} else {
		c.store = postgresStore(t)
	}
	db, err := pgxpool.New(context.Background(), c.store)
	if err != nil {
		t.Fatal(err)
	}
	c.db = db
	t.Cleanup(db.Close) // registered after the database's drop: runs before it
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.exe = exe
	var redirects []string
	for i := range chaosReplicaCount {
		addr := stableAddr(t)
		c.replicas = append(c.replicas, &chaosReplica{i: i, addr: addr, base: "http://" + addr})
		redirects = append(redirects, "http://"+addr+"/oauth/callback")
	}
	c.emu, err = emulator.NewServer(emulator.Config{
		AutoApprove: true,
		Clients: []emulator.Client{{ID: "chaos-client", Secret: "chaos-secret-0123456789",
			RedirectURIs: redirects, Name: "Chaos"}},
		AccessTokenTTL: o.tokenTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.emu.Close() })
	c.emuH = c.emu.Handler()
	for i := range chaosReplicaCount {
		f := newGateFront(c, i)
		t.Cleanup(f.srv.Close)
		c.fronts = append(c.fronts, f)
	}
	c.keys = t.TempDir() + "/keyset.json"
	mainRun := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("tokenkeeper %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	mainRun("keys", "generate", "--out", c.keys)
	var created struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(mainRun("apikeys", "create", "--store", c.store, "--name", "chaos", "--scopes", "admin", "--json")), &created); err != nil || created.Key == "" {
		t.Fatalf("apikeys create --json: %v", err)
	}
	c.key = created.Key
	c.http = &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute},
		Timeout: 30 * time.Second}
	t.Cleanup(c.http.CloseIdleConnections)
	// Kill whatever still runs at the end (a failed test), before the database goes.
	t.Cleanup(func() {
		for _, r := range c.replicas {
			if cmd, exited := r.process(); cmd != nil {
				cmd.Process.Kill()
				<-exited
			}
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, len(c.replicas))
	for i, r := range c.replicas {
		wg.Go(func() { errs[i] = c.start(r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	return c
}

// start runs a new process for r and waits until it listens.
func (c *cluster) start(r *chaosReplica) error {
	r.mu.Lock()
	r.n++
	r.owner = fmt.Sprintf("chaos-replica-%d.%d", r.i, r.n)
	owner := r.owner
	r.mu.Unlock()
	args := []string{"serve", "--listen", r.addr, "--public-url", r.base, "--store", c.store, "--key-file", c.keys,
		"--provider", "custom", "--auth-url", c.emu.URL + "/oauth/authorize", "--token-url", c.fronts[r.i].srv.URL + "/oauth/token",
		"--api-url", c.emu.APIURL, "--allowed-return-url", "https://app.example/settings", "--log-level", "info",
		"--shutdown-timeout", "5s", "--refresh-timeout", chaosRefreshTimeout.String(), "--lease-ttl", chaosLeaseTTL.String()}
	cmd := exec.Command(c.exe, args...)
	cmd.Env = append(os.Environ(), chaosChildEnv+"=serve", chaosOwnerEnv+"="+owner,
		"TOKENKEEPER_CLIENT_ID=chaos-client", "TOKENKEEPER_CLIENT_SECRET=chaos-secret-0123456789")
	stdout := &logtest.Buffer{}
	fmt.Fprintf(&r.logs, "=== process %d (owner %s)\n", r.n, owner)
	cmd.Stdout, cmd.Stderr = stdout, &r.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stdout.String(), "serving on") {
		select {
		case <-exited:
			return fmt.Errorf("replica %d (%s) exited before listening: %v", r.i, owner, cmd.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %d (%s) did not listen within 60s", r.i, owner)
		}
	}
	return nil
}

// kill SIGKILLs r's process and waits for it to be gone; held is how many of its
// refresh requests its gate holds. It records which connections r held a lease or a
// marker on: each of those waits for the lease to expire before another replica may
// refresh it.
func (c *cluster) kill(r *chaosReplica, held int) {
	cmd, exited := r.process()
	at := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	// Read after the death, so that no lease the victim took in its last moments is
	// missed: a statement it had sent is still run by the database after it died (a
	// run with a check right after the exit missed one such lease, taken by an
	// AcquireLease that was on the wire). A released lease has no owner, and owner names
	// are never reused.
	time.Sleep(250 * time.Millisecond)
	var leased []string
	rows, err := c.db.Query(context.Background(),
		"SELECT id FROM connections WHERE lease_owner = $1 OR pending_owner = $1", r.currentOwner())
	if err == nil {
		for rows.Next() {
			var id string
			if rows.Scan(&id) == nil {
				leased = append(leased, id)
			}
		}
		rows.Close()
	}
	c.kills = append(c.kills, killRecord{at: at, leased: leased})
	fmt.Fprintf(&r.logs, "=== SIGKILL at %s, %d refresh requests held, leases on %v\n", at.Format("15:04:05.000"), held, leased)
	r.mu.Lock()
	r.cmd = nil
	r.mu.Unlock()
}

// killRecord is one SIGKILL, and the connections the victim held a lease or marker on.
type killRecord struct {
	at     time.Time
	leased []string
}

// killsOn counts the kills between from and to whose victim held conn's lease.
func (c *cluster) killsOn(conn string, from, to time.Time) int {
	n := 0
	for _, k := range c.kills {
		if !k.at.Before(from) && k.at.Before(to) && slices.Contains(k.leased, conn) {
			n++
		}
	}
	return n
}

// stopAll sends SIGTERM to every replica and checks that each drains and exits 0.
func (c *cluster) stopAll() {
	c.t.Helper()
	for _, r := range c.replicas {
		if cmd, _ := r.process(); cmd != nil {
			cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, r := range c.replicas {
		cmd, exited := r.process()
		if cmd == nil {
			continue
		}
		select {
		case <-exited:
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				c.t.Errorf("replica %d exited %d after SIGTERM; want 0", r.i, code)
			}
		case <-time.After(20 * time.Second):
			c.t.Errorf("replica %d did not stop within 20s of SIGTERM", r.i)
			cmd.Process.Kill()
			<-exited
		}
		r.mu.Lock()
		r.cmd = nil
		r.mu.Unlock()
	}
}

// markers counts the outcome-unknown markers owner has in the store.
func (c *cluster) markers(owner string) (int, error) {
	var n int
	err := c.db.QueryRow(context.Background(), "SELECT count(*) FROM connections WHERE pending_owner = $1", owner).Scan(&n)
	return n, err
}

// quiesce closes r's gate and waits until r holds no provider answer it has not
// committed: nothing of r's is inside the emulator, and each marker r has in the store
// belongs to a request held at the gate (so it never reached the provider). A process
// stopped or killed then is at one of the crash table's harmless rows: before the marker,
// after the marker but before the provider saw the request, or after the commit.
// Stopping it between the provider's answer and the commit is the lost-response case,
// which no client can survive and which TestServeChaos_DroppedResponses covers.
func (c *cluster) quiesce(r *chaosReplica) (held int, err error) {
	f := c.fronts[r.i]
	f.closeGate()
	deadline := time.Now().Add(15 * time.Second)
	for {
		inflight, held := f.counts()
		n, err := c.markers(r.currentOwner())
		if err == nil && inflight == 0 && n == held {
			return held, nil
		}
		if time.Now().After(deadline) {
			return held, fmt.Errorf("replica %d did not quiesce in 15s: %d requests in the emulator, %d held, %d markers (%v)", r.i, inflight, held, n, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do sends one request to the service or the emulator and decodes a 2xx JSON answer.
func (c *cluster) do(method, u, bearer string, out any) (int, []byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, data, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, data, err
		}
	}
	return resp.StatusCode, data, nil
}

// connectAll connects o.conns connections, each through a replica in turn, a few
// browsers at a time, and learns each one's token family from its first token.
func (c *cluster) connectAll() {
	t := c.t
	t.Helper()
	for i := range c.o.conns {
		c.ids = append(c.ids, fmt.Sprintf("conn-%03d", i))
	}
	var mu sync.Mutex
	connect := func(i int) error {
		base := c.replicas[i%len(c.replicas)].base
		id := c.ids[i]
		var sess struct {
			URL string `json:"url"`
		}
		body, _ := json.Marshal(map[string]string{"connection_id": id, "return_to": "https://app.example/settings/pleo"})
		req, _ := http.NewRequest("POST", base+"/v1/connect-sessions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &sess) != nil {
			return fmt.Errorf("%s: POST /v1/connect-sessions: %d %.200s", id, resp.StatusCode, data)
		}
		jar, _ := cookiejar.New(nil)
		var landed *url.URL
		browser := &http.Client{Jar: jar, Transport: c.http.Transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == "app.example" {
				landed = req.URL
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err = browser.PostForm(sess.URL, nil) // the landing page's button
		if err != nil {
			return fmt.Errorf("%s: follow the connect link: %v", id, err)
		}
		resp.Body.Close()
		if landed == nil || landed.Query().Get("status") != "connected" {
			return fmt.Errorf("%s: the connect flow ended at %s (%d), landed at %v", id, resp.Request.URL, resp.StatusCode, landed)
		}
		var tr tokenResponse
		code, data, err := c.do("POST", base+"/v1/connections/"+id+"/token", c.key, &tr)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%s: the first token: %d %.200s %v", id, code, data, err)
		}
		h := hashToken(tr.AccessToken)
		chain := c.tokens.chainOfAT(h)
		if chain < 0 {
			return fmt.Errorf("%s: its first token came from no code exchange the fronts saw", id)
		}
		c.notePromise(id, h, tr.ExpiresAt)
		mu.Lock()
		c.connChain[id] = chain
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, c.o.conns)
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < c.o.conns; i = int(next.Add(1) - 1) {
				if err := connect(i); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.dumpLogs()
		t.Fatal(err)
	}
}

func (c *cluster) dumpLogs() {
	for _, r := range c.replicas {
		c.t.Logf("replica %d log:\n%s", r.i, &r.logs)
	}
	rep, _ := json.MarshalIndent(c.emu.Report().Violations, "", "  ")
	c.t.Logf("emulator violations: %s", rep)
}

// stableAddr returns a free loopback address below the kernel's range of ephemeral
// ports. A replica listens there again after each restart: a port from freeAddr (the
// ephemeral range) may meanwhile become the local port of one of the thousands of
// connections the clients open, or be taken by another test's listener on :0 (a run
// lost its first replica to "address already in use" that way).
func stableAddr(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(low-10000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	return freeAddr(t)
}
