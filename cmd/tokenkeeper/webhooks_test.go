package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// hookReceiver is a webhook receiver that checks each signature as the Standard Webhooks
// specification describes it, and can be down (503).
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	down   bool
	got    []hookMessage
}

type hookMessage struct {
	ID   string
	Body string
	Type string `json:"type"`
	Data struct {
		ConnectionID string `json:"connection_id"`
		Subject      string `json:"subject"`
		Reason       string `json:"reason"`
	} `json:"data"`
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{t: t, secret: secret}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body)))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("webhook-signature")), []byte(want)) {
			t.Errorf("a webhook with a bad signature: %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		m := hookMessage{ID: r.Header.Get("webhook-id"), Body: string(body)}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		h.got = append(h.got, m)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *hookReceiver) messages() []hookMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookMessage(nil), h.got...)
}

// waitFor waits until a message of type typ arrived, and returns the messages.
func (h *hookReceiver) waitFor(typ string) []hookMessage {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ms := h.messages()
		for _, m := range ms {
			if m.Type == typ {
				return ms
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no %s webhook within 15s; got %+v", typ, ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServe_Webhooks: serve sends signed webhooks to a configured endpoint and to one made
// over the API; a reconnect_required that happens while the receiver is down, with serve
// restarted meanwhile, still arrives once; the event log lists refreshes; no token is in
// any webhook.
func TestServe_Webhooks(t *testing.T) {
	e := newE2E(t)
	secret := tokenkeeper.NewWebhookSecret()
	t.Setenv(envWebhookSecret, secret.Reveal())
	cfg := newHookReceiver(t, secret.Reveal())
	e.serve(e2eOptions{args: []string{"--webhook-url", cfg.srv.URL + "/hooks"}})

	// An endpoint made over the API, with its own secret, and its test event.
	api := newHookReceiver(t, "")
	var created struct{ ID, URL, Secret string }
	if code := e.call("POST", "/v1/webhook-endpoints", map[string]string{"url": api.srv.URL}, &created); code != http.StatusCreated {
		t.Fatalf("POST /v1/webhook-endpoints: %d", code)
	}
	api.mu.Lock()
	api.secret = created.Secret
	api.mu.Unlock()
	var test struct {
		EventID string `json:"event_id"`
	}
	if code := e.call("POST", "/v1/webhook-endpoints/"+created.ID+"/test", nil, &test); code != http.StatusAccepted {
		t.Fatalf("POST test: %d", code)
	}
	api.waitFor("webhook.test")

	if q := e.connect("acme"); q.Get("status") != "connected" {
		t.Fatalf("connect: %v", q)
	}
	for _, h := range []*hookReceiver{cfg, api} {
		ms := h.waitFor("connection.connected")
		last := ms[len(ms)-1]
		if last.Data.ConnectionID != "acme" || !strings.HasPrefix(last.Data.Subject, "urn:pleo:company:") {
			t.Errorf("connected webhook %s", last.Body)
		}
	}
	var tok tokenResponse
	if code := e.call("POST", "/v1/connections/acme/token", nil, &tok); code != http.StatusOK {
		t.Fatalf("token: %d", code)
	}
	issued := []string{tok.AccessToken}
	// One refresh, recorded in the event log but not sent.
	e.emu.Advance(2 * time.Hour)
	if code := e.call("POST", "/v1/connections/acme/token", nil, &tok); code != http.StatusOK {
		t.Fatalf("token after expiry: %d", code)
	}
	issued = append(issued, tok.AccessToken)

	// The receiver goes down; the grant is revoked; serve restarts; the receiver comes
	// back: the reconnect_required webhook arrives once.
	cfg.setDown(true)
	if err := e.emu.Revoke(latestAuthorisation(t, e.emu).ID); err != nil {
		t.Fatal(err)
	}
	e.emu.Advance(2 * time.Hour)
	e.call("POST", "/v1/connections/acme/token", nil, nil)
	api.waitFor("connection.reconnect_required")
	if code := e.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	cfg.setDown(false)
	e.serve(e2eOptions{args: []string{"--webhook-url", cfg.srv.URL + "/hooks"}})
	e.emu.Advance(time.Hour) // past the retry's backoff, on the service's clock
	ms := cfg.waitFor("connection.reconnect_required")
	n := 0
	for _, m := range ms {
		if m.Type == "connection.reconnect_required" {
			n++
			if m.Data.ConnectionID != "acme" || m.Data.Reason == "" {
				t.Errorf("reconnect_required webhook %s", m.Body)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d reconnect_required webhooks, want 1", n)
	}

	var events struct {
		Events []struct{ Type string } `json:"events"`
	}
	if code := e.call("GET", "/v1/connections/acme/events", nil, &events); code != http.StatusOK {
		t.Fatalf("GET events: %d", code)
	}
	var types []string
	for _, ev := range events.Events {
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, " "); got != "connection.reconnect_required connection.refreshed connection.connected" {
		t.Errorf("event log (newest first): %s", got)
	}
	var deliveries struct {
		Deliveries []struct{ State string } `json:"deliveries"`
	}
	e.call("GET", "/v1/webhook-endpoints/"+created.ID+"/deliveries", nil, &deliveries)
	if len(deliveries.Deliveries) != 3 { // test, connected, reconnect_required
		t.Errorf("%d deliveries to the API endpoint, want 3", len(deliveries.Deliveries))
	}

	e.stop()
	logs := e.stderr.String()
	for _, m := range append(cfg.messages(), api.messages()...) {
		for _, tk := range issued {
			if strings.Contains(m.Body, tk) {
				t.Errorf("a webhook holds a token: %s", m.Body)
			}
		}
	}
	for _, s := range append(issued, secret.Reveal(), created.Secret) {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a token or webhook secret (%.10s...)", s)
		}
	}
}

// TestKeys_RotateResealsWebhookSecrets: keys rotate --remove-old re-seals the webhook
// endpoints' secrets too, so they still open (and sign) with the keyset left.
func TestKeys_RotateResealsWebhookSecrets(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	e.seed(t, e.ks, "acme", tokenkeeper.StateActive, time.Now())
	eps := &webhook.Endpoints{Store: e.st, Log: e.st, Sealer: seal.NewKeyring(e.ks)}
	ep, secret, err := eps.Create(context.Background(), "https://hooks.example/tk")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := e.run(t, "keys", "rotate", "--key-file", e.keyFile, "--settle", "0", "--remove-old")
	if code != exitOK || !strings.Contains(stdout, "re-sealed 1 webhook endpoint secrets") {
		t.Fatalf("keys rotate --remove-old: exit %d\n%s%s", code, stdout, stderr)
	}
	ks := e.loadKeys(t)
	got, err := e.st.GetWebhookEndpoint(context.Background(), ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := webhook.OpenSecret(seal.NewKeyring(ks), got)
	if err != nil || !opened.Equal(secret) || got.Secret.KeyID != ks.PrimaryKeyID() {
		t.Errorf("after rotation the secret is under %s and opens: %v", got.Secret.KeyID, err)
	}
}

// TestWebhooks_CLI: the webhooks commands on the store.
func TestWebhooks_CLI(t *testing.T) {
	t.Parallel()
	e := newAdmEnv(t)
	code, stdout, stderr := e.run(t, "webhooks", "create", "--url", "http://127.0.0.1:9/hook", "--key-file", e.keyFile)
	secret := strings.TrimSpace(stdout)
	if code != exitOK || !strings.HasPrefix(secret, "whsec_") || !strings.Contains(stderr, "plain http") {
		t.Fatalf("webhooks create: exit %d\n%s%s", code, stdout, stderr)
	}
	var list httpapiList
	mustJSON(t, e.mustRun(t, "webhooks", "list", "--json"), &list)
	if len(list.WebhookEndpoints) != 1 || strings.Contains(e.mustRun(t, "webhooks", "list"), "whsec_") {
		t.Fatalf("webhooks list: %+v", list)
	}
	id := list.WebhookEndpoints[0].ID
	if out := e.mustRun(t, "webhooks", "test", id); !strings.Contains(out, "test event evt_") {
		t.Errorf("webhooks test: %s", out)
	}
	if out := e.mustRun(t, "webhooks", "deliveries", id, "--state", "pending"); !strings.Contains(out, "webhook.test") {
		t.Errorf("webhooks deliveries: %s", out)
	}
	e.mustRun(t, "webhooks", "delete", id)
	if code, _, _ := e.run(t, "webhooks", "delete", id); code != 4 {
		t.Errorf("deleting again: exit %d, want 4", code)
	}
	for _, args := range [][]string{
		{"webhooks", "create", "--url", "ftp://a.example", "--key-file", e.keyFile},
		{"webhooks", "create", "--key-file", e.keyFile},
		{"webhooks", "deliveries", id, "--state", "lost"},
	} {
		if code, _, _ := e.run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	code, stdout, _ = run(t, "webhooks", "secret")
	if _, err := tokenkeeper.WebhookSecretKey(tokenkeeper.NewSecret(strings.TrimSpace(stdout))); code != exitOK || err != nil {
		t.Errorf("webhooks secret: exit %d, %q, %v", code, stdout, err)
	}
	entries := e.mustRun(t, "audit", "list")
	for _, action := range []string{"webhook_endpoint.create", "webhook_endpoint.test", "webhook_endpoint.delete"} {
		if !strings.Contains(entries, action) {
			t.Errorf("audit lacks %s:\n%s", action, entries)
		}
	}
}

type httpapiList struct {
	WebhookEndpoints []struct{ ID string } `json:"webhook_endpoints"`
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
}

// TestServe_EventsLostInCrash: a serve whose every event is lost after the keeper's
// commit (as if it died right after each) connects a connection and loses its grant; the
// next serve's reconciler finds the connection's state unreported and sends the
// reconnect_required webhook, once, and records the change in the event log.
func TestServe_EventsLostInCrash(t *testing.T) {
	e := newE2E(t)
	secret := tokenkeeper.NewWebhookSecret()
	t.Setenv(envWebhookSecret, secret.Reveal())
	rcv := newHookReceiver(t, secret.Reveal())
	args := []string{"--webhook-url", rcv.srv.URL}
	e.serve(e2eOptions{args: args, ctx: func(ctx context.Context) context.Context {
		return context.WithValue(ctx, dropEventsKey{}, true)
	}})
	if q := e.connect("acme"); q.Get("status") != "connected" {
		t.Fatalf("connect: %v", q)
	}
	if err := e.emu.Revoke(latestAuthorisation(t, e.emu).ID); err != nil {
		t.Fatal(err)
	}
	e.emu.Advance(2 * time.Hour)
	if code := e.call("POST", "/v1/connections/acme/token", nil, nil); code != http.StatusConflict {
		t.Fatalf("token after the revocation: %d, want 409", code)
	}
	var events struct {
		Events []struct{ Type, Reason string } `json:"events"`
	}
	e.call("GET", "/v1/connections/acme/events", nil, &events)
	if len(events.Events) != 0 || len(rcv.messages()) != 0 {
		t.Fatalf("the dropping serve recorded %v and sent %v", events.Events, rcv.messages())
	}
	if code := e.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	e.emu.Advance(5 * time.Minute) // past the reconciler's grace
	e.serve(e2eOptions{args: args})
	ms := rcv.waitFor("connection.reconnect_required")
	if len(ms) != 1 || ms[0].Data.ConnectionID != "acme" || ms[0].Data.Reason == "" {
		t.Errorf("webhooks after the restart: %+v", ms)
	}
	e.call("GET", "/v1/connections/acme/events", nil, &events)
	if len(events.Events) != 1 || events.Events[0].Type != "connection.reconnect_required" {
		t.Errorf("event log after the restart: %+v", events.Events)
	}
	if !strings.Contains(e.stderr.String(), "repaired a missing event") {
		t.Errorf("the repair is not logged:\n%s", e.stderr)
	}
}
