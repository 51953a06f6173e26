package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/pgtest"
)

// tcpCut forwards a local port to a TCP server until cut, which closes the
// listener and every forwarded connection (the database "goes away": new
// connections are refused, open ones end); restore listens on the same port
// again.
type tcpCut struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func newTCPCut(t *testing.T, target string) *tcpCut {
	c := &tcpCut{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.serve(ln)
	t.Cleanup(c.cut)
	return c
}

func (c *tcpCut) serve(ln net.Listener) {
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", c.target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			if c.ln != ln {
				c.mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			c.conns[in], c.conns[out] = true, true
			c.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
			go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
		}
	}()
}

func (c *tcpCut) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for conn := range c.conns {
		conn.Close()
		delete(c.conns, conn)
	}
}

func (c *tcpCut) restore() {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatalf("listen again on %s: %v", c.addr, err)
	}
	c.serve(ln)
}

// TestServe_DatabaseOutage: while PostgreSQL cannot be reached, serve keeps
// serving the cached token within its promise, refreshes nothing (the
// emulator sees no refresh) and answers 503 for what needs one; /readyz
// says "degraded" (200) and tokenkeeper_store_up is 0. When the database is
// back, it recovers without a restart: ready again, and the next token is
// one refresh away.
func TestServe_DatabaseOutage(t *testing.T) {

	db, err := url.Parse(pgtest.Database(t, "outage"))
	if err != nil {
		t.Fatal(err)
	}
	cut := newTCPCut(t, db.Host)
	db.Host = cut.addr
	q := db.Query()
	q.Set("connect_timeout", "2")
	db.RawQuery = q.Encode()

	e := newE2E(t)
	e.store = db.String()
	var created struct {
		Key string `json:"key"`
	}
	code, out, errb := run(t, "apikeys", "create", "--store", e.store, "--name", "outage", "--scopes", "admin", "--json")
	if code != exitOK || json.Unmarshal([]byte(out), &created) != nil {
		t.Fatalf("apikeys create: %d %s", code, errb)
	}
	e.key = created.Key
	e.serve(e2eOptions{})
	if q := e.connect("acme"); q.Get("status") != "connected" {
		t.Fatalf("connect: %v", q)
	}
	var promise time.Time
	token := func() (int, string) {
		var tok tokenResponse
		code := e.call("POST", "/v1/connections/acme/token", nil, &tok)
		promise = tok.ExpiresAt
		return code, tok.AccessToken
	}
	code, first := token()
	if code != 200 {
		t.Fatalf("token: %d", code)
	}
	firstPromise := promise
	refreshes := func() int { return latestAuthorisation(t, e.emu).Refreshes }

	waitMetric(t, e, "tokenkeeper_change_feed_up 1")
	waitMetric(t, e, "tokenkeeper_store_notify_queue_usage 0")
	cut.cut()
	waitReady(t, e, "degraded")
	if m := metricsText(t, e); !strings.Contains(m, "tokenkeeper_store_up 0") {
		t.Error("tokenkeeper_store_up is not 0 while the database is away")
	}
	waitMetric(t, e, "tokenkeeper_change_feed_up 0")
	// Within the promise: the cached token, as before.
	if code, tok := token(); code != 200 || tok != first {
		t.Fatalf("token within the promise during the outage: %d (same token: %v)", code, tok == first)
	}
	// Past the promise: a refresh is due, and cannot be made safely.
	if _, err := e.emu.Advance(firstPromise.Sub(e.emu.Now()) + 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, _ := token(); code != http.StatusServiceUnavailable {
		t.Fatalf("token past the promise during the outage: %d, want 503", code)
	}
	time.Sleep(300 * time.Millisecond) // several scheduler ticks on a due, hot connection
	if n := refreshes(); n != 0 {
		t.Fatalf("%d refreshes reached the provider while the database was away; want 0", n)
	}

	cut.restore()
	waitReady(t, e, "ok")
	if m := metricsText(t, e); !strings.Contains(m, "tokenkeeper_store_up 1") {
		t.Error("tokenkeeper_store_up is not 1 once the database is back")
	}
	waitMetric(t, e, "tokenkeeper_change_feed_up 1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, tok := token()
		if code == 200 && tok != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new token 10 s after the database came back: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := refreshes(); n != 1 {
		t.Errorf("%d refreshes after the outage; want exactly 1", n)
	}
	if v := e.emu.Report().Violations; len(v) > 0 {
		t.Errorf("violations: %+v", v)
	}
	for _, want := range []string{"the store does not answer", "the store answers again"} {
		if !strings.Contains(e.stderr.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// waitReady polls /readyz until its status is want.
func waitReady(t *testing.T, e *e2e, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.base + "/readyz")
		if err == nil {
			var h struct{ Status, Reason string }
			err = errors.Join(json.NewDecoder(resp.Body).Decode(&h), resp.Body.Close())
			last = h.Status + " " + h.Reason
			if err == nil && h.Status == want && (want != "degraded" || resp.StatusCode == 200) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/readyz did not turn %q within 10 s (last: %s)", want, last)
}

func metricsText(t *testing.T, e *e2e) string {
	t.Helper()
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetric polls /metrics until it holds line.
func waitMetric(t *testing.T, e *e2e, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(metricsText(t, e), line) {
		if time.Now().After(deadline) {
			t.Fatalf("/metrics did not show %q within 10 s", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
