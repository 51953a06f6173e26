package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// readyz returns /readyz's status and reason.
func (e *e2e) readyz() (int, string) {
	e.t.Helper()
	resp, err := http.Get(e.base + "/readyz")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Status, Reason string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		e.t.Fatalf("/readyz: %d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, h.Reason
}

// waitReady polls /readyz until it answers status, and returns its reason.
func (e *e2e) waitReady(status int, what string) string {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, reason := e.readyz()
		if code == status {
			return reason
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: /readyz still answers %d (%s); want %d\n%s", what, code, reason, status, e.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metrics returns the /metrics exposition.
func (e *e2e) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// wantMetrics checks that /metrics holds every line of want.
func (e *e2e) wantMetrics(what string, want ...string) {
	e.t.Helper()
	m := e.metrics()
	for _, line := range want {
		if !strings.Contains(m, "\n"+line+"\n") {
			e.t.Errorf("%s: /metrics lacks %q", what, line)
		}
	}
}

// TestServe_KeyFileRewrittenAtStart: a rotation written after serve loaded the key file
// but before its watcher started (the window holds the store's opening and the keeper's
// start) is picked up.
func TestServe_KeyFileRewrittenAtStart(t *testing.T) {
	e := newE2E(t)
	data, err := os.ReadFile(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rotated, newID, err := seal.Rotate(data)
	if err != nil {
		t.Fatal(err)
	}
	e.serve(e2eOptions{beforeKeyWatch: func() {
		if err := seal.Write(e.keyFile, rotated); err != nil {
			t.Error(err)
		}
	}})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.stderr.String(), "primary="+newID) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not load the key file rewritten at its start:\n%s", e.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.waitReady(http.StatusOK, "after the reload")
	e.wantMetrics("after the reload", "tokenkeeper_key_file_in_sync 1", `tokenkeeper_keyset_reloads_total{result="ok"} 1`)
	// What serve seals now is under the new key: connect, and look at the store.
	e.connect("acme")
	if code := e.stop(); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	for _, r := range storeRecords(t, e.store) {
		if r.Tokens.RefreshToken.KeyID != newID {
			t.Errorf("%s is sealed under %s; want the rotated key %s", r.ID, r.Tokens.RefreshToken.KeyID, newID)
		}
	}
}

// TestServe_KeyFileOutOfSync: while the key file holds a keyset serve cannot use, /readyz
// answers 503 saying why and tokenkeeper_key_file_in_sync is 0; the keyset in use stays,
// and serve keeps working. A good file brings both back.
func TestServe_KeyFileOutOfSync(t *testing.T) {
	e := startE2E(t)
	e.connect("acme")
	data, err := os.ReadFile(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	e.waitReady(http.StatusOK, "at start")
	e.wantMetrics("at start", "tokenkeeper_key_file_in_sync 1",
		`tokenkeeper_keyset_reloads_total{result="ok"} 0`, `tokenkeeper_keyset_reloads_total{result="error"} 0`)

	stranger, err := seal.Generate() // a keyset without the primary key in use
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Write(e.keyFile, stranger); err != nil {
		t.Fatal(err)
	}
	reason := e.waitReady(http.StatusServiceUnavailable, "a keyset without the primary in use")
	for _, want := range []string{e.keyFile, "refused", "does not hold the current primary key"} {
		if !strings.Contains(reason, want) {
			t.Errorf("/readyz reason %q does not say %q", reason, want)
		}
	}
	e.wantMetrics("refused", "tokenkeeper_key_file_in_sync 0", `tokenkeeper_keyset_reloads_total{result="error"} 1`)
	if code := e.call("POST", "/v1/connections/acme/token", nil, nil); code != http.StatusOK {
		t.Errorf("POST token while the key file is refused: %d; want 200 (the keyset in use stays)", code)
	}
	time.Sleep(100 * time.Millisecond) // five polls
	if n := strings.Count(e.stderr.String(), "key file changed but is refused"); n != 1 {
		t.Errorf("the refusal was logged %d times; want once for one file", n)
	}

	// Not JSON.
	if err := os.WriteFile(e.keyFile+".new", []byte(`{"primaryKeyId":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.keyFile+".new", e.keyFile); err != nil {
		t.Fatal(err)
	}
	e.waitReadyReason(http.StatusServiceUnavailable, "does not parse")

	// Not a file.
	if err := os.Remove(e.keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.keyFile, 0o700); err != nil {
		t.Fatal(err)
	}
	e.waitReadyReason(http.StatusServiceUnavailable, "cannot be read")
	e.wantMetrics("unreadable", "tokenkeeper_key_file_in_sync 0", `tokenkeeper_keyset_reloads_total{result="error"} 3`)
	if err := os.Remove(e.keyFile); err != nil {
		t.Fatal(err)
	}

	// A rotation of the keyset in use.
	rotated, newID, err := seal.Rotate(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Write(e.keyFile, rotated); err != nil {
		t.Fatal(err)
	}
	e.waitReady(http.StatusOK, "a good key file")
	e.wantMetrics("a good key file", "tokenkeeper_key_file_in_sync 1", `tokenkeeper_keyset_reloads_total{result="ok"} 1`)
	if !strings.Contains(e.stderr.String(), "primary="+newID) {
		t.Errorf("serve did not log the reload of %s:\n%s", newID, e.stderr)
	}
	// No key material reached the log or /readyz.
	var ks struct {
		Key []struct{ KeyData struct{ Value string } }
	}
	for _, d := range [][]byte{data, stranger, rotated} {
		if err := json.Unmarshal(d, &ks); err != nil {
			t.Fatal(err)
		}
		for _, k := range ks.Key {
			if strings.Contains(e.stderr.String(), k.KeyData.Value) || strings.Contains(reason, k.KeyData.Value) {
				t.Error("key material in the log or in /readyz")
			}
		}
	}
}

// waitReadyReason polls /readyz until it answers status with a reason containing want.
func (e *e2e) waitReadyReason(status int, want string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, reason := e.readyz()
		if code == status && strings.Contains(reason, want) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("/readyz answers %d (%s); want %d saying %q\n%s", code, reason, status, want, e.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tokenFront returns a token URL in front of the emulator's, and a channel that receives
// once a request of the grant type reaches it.
func tokenFront(t *testing.T, e *e2e, grant string) (string, <-chan struct{}) {
	t.Helper()
	target, _ := url.Parse(e.emu.URL)
	arrived := make(chan struct{}, 1)
	rp := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if strings.Contains(string(body), "grant_type="+grant) {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL + "/oauth/token", arrived
}

// slowTokens makes the emulator's token endpoint take 2s.
func (e *e2e) slowTokens() {
	e.t.Helper()
	lat := emulator.Duration(2 * time.Second)
	if err := e.emu.SetFaults(emulator.Faults{emulator.EndpointToken: {Latency: &emulator.Latency{Min: lat, Max: lat}}}); err != nil {
		e.t.Fatal(err)
	}
}

// stopDuring sends SIGTERM once a request reaches the token endpoint, and checks that
// serve cut the request waiting on it, exited 0 and logged nothing alarming.
func (e *e2e) stopDuring(arrived <-chan struct{}) {
	t := e.t
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("no request reached the token endpoint:\n%s", e.stderr)
	}
	if code := e.stop(); code != 0 {
		t.Errorf("serve exited %d; want 0 (the work in flight persisted)\n%s", code, e.stderr)
	}
	logs := e.stderr.String()
	for _, bad := range []string{"statement is closed", "database is closed", "level=ERROR"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the log holds %q:\n%s", bad, logs)
		}
	}
	if !strings.Contains(logs, "cutting the requests still in flight") || !strings.Contains(logs, "requests=1") {
		t.Errorf("the log does not say one request was cut:\n%s", logs)
	}
	if v := e.emu.Report().Violations; len(v) != 0 {
		t.Errorf("violations: %+v", v)
	}
	if err := e.emu.SetFaults(nil); err != nil {
		t.Fatal(err)
	}
}

// TestServe_ShutdownTimeout: SIGTERM while a request waits on a slow token endpoint, with
// a shutdown timeout shorter than the wait. Serve cuts the request at the timeout, but
// closes the store only after what was sent persisted and the request's handler returned:
// it exits 0, the emulator saw no broken rule, and the next serve on the same store has
// the tokens the provider issued.
func TestServe_ShutdownTimeout(t *testing.T) {
	t.Run("Refresh", func(t *testing.T) {
		e := newE2E(t)
		tokenURL, arrived := tokenFront(t, e, "refresh_token")
		e.serve(e2eOptions{tokenURL: tokenURL, args: []string{"--shutdown-timeout", "200ms"}})
		e.connect("acme")
		e.emu.Advance(2 * time.Hour) // the access token expired: the next token request refreshes
		e.slowTokens()
		answered := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("POST", e.base+"/v1/connections/acme/token", nil)
			req.Header.Set("Authorization", "Bearer "+e.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answered <- 0 // cut
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		e.stopDuring(arrived)
		if code := <-answered; code != 0 {
			t.Errorf("the request waiting at shutdown got %d; want its connection cut", code)
		}
		if n := latestAuthorisation(t, e.emu).Refreshes; n != 1 {
			t.Fatalf("the emulator counted %d refreshes; want 1", n)
		}

		// The next serve has the refreshed pair: a token and an API call, and no refresh.
		e.serve(e2eOptions{})
		if code := e.call("POST", "/v1/connections/acme/token", nil, nil); code != http.StatusOK {
			t.Fatalf("POST token after the restart: %d\n%s", code, e.stderr)
		}
		var body map[string]any
		if code := e.call("GET", "/v1/connections/acme/proxy/v2/employees", nil, &body); code != http.StatusOK {
			t.Fatalf("GET employees after the restart: %d\n%s", code, e.stderr)
		}
		if n := latestAuthorisation(t, e.emu).Refreshes; n != 1 {
			t.Errorf("the emulator counted %d refreshes after the restart; want still 1 (the refreshed pair persisted)", n)
		}
	})
	t.Run("Connect", func(t *testing.T) {
		// The callback's exchange runs detached (a sent code is spent) and saves the
		// grant after the cut: the store must still be open then.
		e := newE2E(t)
		tokenURL, arrived := tokenFront(t, e, "authorization_code")
		e.serve(e2eOptions{tokenURL: tokenURL, args: []string{"--shutdown-timeout", "200ms"}})
		e.slowTokens()
		var sess struct {
			URL string `json:"url"`
		}
		if code := e.call("POST", "/v1/connect-sessions", map[string]string{"connection_id": "acme", "return_to": e.returnTo}, &sess); code != http.StatusCreated {
			t.Fatalf("POST /v1/connect-sessions: %d", code)
		}
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == "app.example" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			if resp, err := browser.PostForm(sess.URL, nil); err == nil {
				resp.Body.Close()
			}
		}()
		e.stopDuring(arrived)
		<-followed
		recs := storeRecords(t, e.store)
		if len(recs) != 1 || recs[0].ID != "acme" || recs[0].State != tokenkeeper.StateActive {
			t.Fatalf("after the shutdown the store holds %+v; want acme, active", recs)
		}

		e.serve(e2eOptions{})
		if code := e.call("POST", "/v1/connections/acme/token", nil, nil); code != http.StatusOK {
			t.Fatalf("POST token after the restart: %d\n%s", code, e.stderr)
		}
		if n := latestAuthorisation(t, e.emu).Refreshes; n != 0 {
			t.Errorf("the emulator counted %d refreshes; want 0 (the exchanged pair persisted)", n)
		}
	})
}

// storeRecords opens a stopped serve's store and lists its connections.
func storeRecords(t *testing.T, store string) []*tokenkeeper.Record {
	t.Helper()
	st, err := sqlite.Open(context.Background(), strings.TrimPrefix(store, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListConnections(context.Background(), tokenkeeper.ConnectionFilter{})
	if err != nil || len(recs) == 0 {
		t.Fatalf("list: %d records, %v", len(recs), err)
	}
	return recs
}

func TestWarnInsecurePublicURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		warn bool
	}{
		{"https://tokens.example.com", false},
		{"http://127.0.0.1:8080", false},
		{"http://[::1]:8080", false},
		{"http://localhost:8080/tk", false},
		{"http://tokens.example.com", true},
		{"http://10.0.0.5:8080", true},
		{"http://0.0.0.0:8080", true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			var buf logtest.Buffer
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			warnInsecurePublicURL(u, slog.New(slog.NewTextHandler(&buf, nil)))
			if got := strings.Contains(buf.String(), "cannot be Secure"); got != tc.warn {
				t.Errorf("warned = %v, want %v:\n%s", got, tc.warn, buf.String())
			}
		})
	}
}
