package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// TestDispatcher_ReceiverDownThenBack: a receiver that answers 503 for a
// while gets every event exactly once when it is back.
func TestDispatcher_ReceiverDownThenBack(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.register(e, e.store)
	d := e.dispatcher(e.store, nil)
	r.setDown(true)
	ids := emit(t, e, e.store, 10)
	for range 4 { // four failed attempts each, backing off 1s, 2s, 4s, 8s
		if n := runOnce(t, d); n != 10 {
			t.Fatalf("claimed %d, want 10", n)
		}
		if n := runOnce(t, d); n != 0 {
			t.Fatalf("claimed %d before the backoff passed", n)
		}
		e.clock.Add(time.Minute)
	}
	pending := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryPending})
	if len(pending) != 10 || pending[0].Attempts != 4 || pending[0].LastStatus != 503 || pending[0].LastError != "HTTP 503" {
		t.Fatalf("while down: %d pending, first %+v", len(pending), pending[0])
	}
	r.setDown(false)
	if n := runOnce(t, d); n != 10 {
		t.Fatalf("claimed %d after the receiver came back, want 10", n)
	}
	got := r.delivered()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s delivered %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(ids) {
		t.Errorf("receiver got %d events, want %d", len(got), len(ids))
	}
	if n := len(listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryDelivered})); n != 10 {
		t.Errorf("%d delivered in the log, want 10", n)
	}
}

// TestDispatcher_Restart: deliveries enqueued while no dispatcher runs,
// and one claimed by a dispatcher that died before sending, all go out
// once the store is reopened by a new dispatcher.
func TestDispatcher_Restart(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.register(e, e.store)
	ids := emit(t, e, e.store, 6)
	// A dispatcher claims two and dies before sending them.
	dead, err := e.store.ClaimDeliveries(t.Context(), "dead", e.clock.Now(), 300*time.Millisecond, 2)
	if err != nil || len(dead) != 2 {
		t.Fatalf("claim: %v, %d", err, len(dead))
	}
	// The process restarts: a new store handle, a new dispatcher.
	s := e.open()
	d := e.dispatcher(s, nil)
	if n := runOnce(t, d); n != 4 {
		t.Fatalf("claimed %d, want the 4 unclaimed", n)
	}
	time.Sleep(400 * time.Millisecond) // the dead claim expires (the store's clock)
	if n := runOnce(t, d); n != 2 {
		t.Fatalf("claimed %d after the dead claim expired, want 2", n)
	}
	got := r.delivered()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("event %s delivered %d times, want 1", id, got[id])
		}
	}
}

// TestDispatcher_GiveUp: after MaxAttempts the delivery is failed, kept
// and visible, and never attempted again.
func TestDispatcher_GiveUp(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.register(e, e.store)
	r.setDown(true)
	d := e.dispatcher(e.store, func(c *webhook.Config) { c.MaxAttempts = 3 })
	emit(t, e, e.store, 1)
	for range 5 {
		runOnce(t, d)
		e.clock.Add(time.Hour)
	}
	failed := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryFailed})
	if len(failed) != 1 || failed[0].Attempts != 3 || !strings.Contains(failed[0].LastError, "gave up after 3 attempts") {
		t.Fatalf("failed deliveries = %+v", failed)
	}
	if n := len(r.got); n != 3 {
		t.Errorf("receiver saw %d attempts, want 3", n)
	}
	if !strings.Contains(e.logs.String(), "webhook failed; giving up") {
		t.Errorf("no error logged for the failed delivery:\n%s", e.logs)
	}
}

// TestDispatcher_MaxAge: a delivery older than MaxAge is failed at its
// next attempt.
func TestDispatcher_MaxAge(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.register(e, e.store)
	r.setDown(true)
	d := e.dispatcher(e.store, func(c *webhook.Config) { c.MaxAge = 30 * time.Minute; c.MaxBackoff = time.Hour })
	emit(t, e, e.store, 1)
	runOnce(t, d)
	e.clock.Add(time.Hour)
	runOnce(t, d)
	failed := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryFailed})
	if len(failed) != 1 || failed[0].Attempts != 2 {
		t.Fatalf("failed = %+v, want one failed at its 2nd attempt", failed)
	}
}

// TestDispatcher_Backoff: waits double from MinBackoff up to MaxBackoff,
// less the jitter.
func TestDispatcher_Backoff(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	r.register(e, e.store)
	r.setDown(true)
	d := e.dispatcher(e.store, func(c *webhook.Config) {
		c.MinBackoff, c.MaxBackoff = 10*time.Second, 45*time.Second
		c.Jitter = func(d time.Duration) time.Duration { return d } // the most: half the wait
	})
	emit(t, e, e.store, 1)
	for _, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 22500 * time.Millisecond, 22500 * time.Millisecond} {
		start := e.clock.Now()
		runOnce(t, d)
		got := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{})[0]
		if wait := got.NextAttemptAt.Sub(start); wait != want {
			t.Errorf("attempt %d: next attempt after %s, want %s", got.Attempts, wait, want)
		}
		e.clock.Add(time.Hour)
	}
}

// TestDispatcher_EndpointDeleted: deleting an endpoint fails its pending
// deliveries, and nothing more is sent to it.
func TestDispatcher_EndpointDeleted(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	ep := r.register(e, e.store)
	emit(t, e, e.store, 3)
	if err := e.endpoints(e.store).Delete(t.Context(), ep.ID); err != nil {
		t.Fatal(err)
	}
	d := e.dispatcher(e.store, nil)
	if n := runOnce(t, d); n != 0 {
		t.Errorf("claimed %d deliveries of a deleted endpoint", n)
	}
	if n := len(listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryFailed})); n != 3 {
		t.Errorf("%d failed, want 3", n)
	}
	if err := e.endpoints(e.store).Delete(t.Context(), ep.ID); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		t.Errorf("deleting again: %v, want not_found", err)
	}
	if _, err := e.endpoints(e.store).SendTest(t.Context(), ep.ID); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
		t.Errorf("a test to a deleted endpoint: %v, want not_found", err)
	}
}

// TestDispatcher_NetworkError: an endpoint nobody listens on is retried,
// and the recorded error does not quote the URL.
func TestDispatcher_NetworkError(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	ep := r.register(e, e.store)
	r.srv.Close()
	emit(t, e, e.store, 1)
	runOnce(t, e.dispatcher(e.store, nil))
	got := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{})[0]
	if got.State != tokenkeeper.DeliveryPending || got.LastStatus != 0 || got.LastError == "" || strings.Contains(got.LastError, ep.URL) {
		t.Errorf("after a refused connection: %+v", got)
	}
}

// TestDispatcher_NoRedirects: a 3xx is not a delivery, and is not
// followed.
func TestDispatcher_NoRedirects(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t)
	redirect := newReceiver(t)
	redirect.srv.Config.Handler = httpRedirect(r.srv.URL)
	ep, _, err := e.endpoints(e.store).Create(t.Context(), redirect.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	emit(t, e, e.store, 1)
	runOnce(t, e.dispatcher(e.store, nil))
	got := listDeliveries(t, e.store, tokenkeeper.DeliveryFilter{EndpointID: ep.ID})[0]
	if got.State != tokenkeeper.DeliveryPending || got.LastStatus != 307 {
		t.Errorf("after a redirect: %+v", got)
	}
	if len(r.got) != 0 {
		t.Errorf("the redirect was followed")
	}
}

// TestSendTest: the test event goes to one endpoint, signed, as
// webhook.test.
func TestSendTest(t *testing.T) {
	e := newEnv(t)
	a, b := newReceiver(t), newReceiver(t)
	epA := a.register(e, e.store)
	b.register(e, e.store)
	ev, err := e.endpoints(e.store).SendTest(t.Context(), epA.ID)
	if err != nil {
		t.Fatal(err)
	}
	runOnce(t, e.dispatcher(e.store, nil))
	if got := a.delivered(); got[string(ev.ID)] != 1 || len(got) != 1 {
		t.Errorf("a got %v, want the test event once", got)
	}
	if len(b.got) != 0 {
		t.Errorf("b got the test event")
	}
	if !strings.Contains(string(a.bodies[0]), `"type":"webhook.test"`) {
		t.Errorf("test body = %s", a.bodies[0])
	}
}

// TestEndpoints_URLs: https is accepted, http with a warning, other
// schemes and userinfo refused; the secret is in Standard Webhooks' form,
// sealed at rest, and never logged.
func TestEndpoints_URLs(t *testing.T) {
	e := newEnv(t)
	eps := e.endpoints(e.store)
	ep, secret, err := eps.Create(t.Context(), "https://hooks.example.com/tk")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tokenkeeper.WebhookSecretKey(secret)
	if err != nil || len(key) < 24 {
		t.Fatalf("secret key: %d bytes, %v", len(key), err)
	}
	if strings.Contains(string(ep.Secret.Ciphertext), secret.Reveal()) {
		t.Errorf("the secret is stored in plaintext")
	}
	opened, err := webhook.OpenSecret(e.ring, ep)
	if err != nil || !opened.Equal(secret) {
		t.Errorf("OpenSecret: %v", err)
	}
	if strings.Contains(e.logs.String(), "plain http") {
		t.Errorf("warned about an https URL")
	}
	if _, _, err := eps.Create(t.Context(), "http://10.0.0.1:8080/tk"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.logs.String(), "plain http") {
		t.Errorf("no warning for an http URL:\n%s", e.logs)
	}
	for _, bad := range []string{"ftp://a.example/x", "https://user:pw@a.example/x", "https:///x", "/relative", "javascript:alert(1)", "https://a.example/#frag"} {
		if _, _, err := eps.Create(t.Context(), bad); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("Create(%q) = %v, want invalid", bad, err)
		}
	}
	if strings.Contains(e.logs.String(), secret.Reveal()) || strings.Contains(e.logs.String(), "pw@") {
		t.Errorf("logs hold a secret:\n%s", e.logs)
	}
}

// TestEndpoints_Ensure: a configured endpoint is made once, kept across
// restarts, and replaced when its secret changes.
func TestEndpoints_Ensure(t *testing.T) {
	e := newEnv(t)
	eps := e.endpoints(e.store)
	s1 := tokenkeeper.NewWebhookSecret()
	a, err := eps.Ensure(t.Context(), "https://a.example/hook", s1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := eps.Ensure(t.Context(), "https://a.example/hook", s1)
	if err != nil || again.ID != a.ID {
		t.Fatalf("Ensure again = %v, %v; want %s", again, err, a.ID)
	}
	b, err := eps.Ensure(t.Context(), "https://a.example/hook", tokenkeeper.NewWebhookSecret())
	if err != nil || b.ID == a.ID {
		t.Fatalf("Ensure with a new secret = %v, %v", b, err)
	}
	list, _ := eps.List(t.Context())
	if len(list) != 1 || list[0].ID != b.ID {
		t.Errorf("List = %v, want only %s", list, b.ID)
	}
	// Deleted over the API, it stays deleted.
	s2 := tokenkeeper.NewWebhookSecret()
	c, _ := eps.Ensure(t.Context(), "https://c.example/hook", s2)
	if err := eps.Delete(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	got, err := eps.Ensure(t.Context(), "https://c.example/hook", s2)
	if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeConflict || got == nil || got.ID != c.ID || !got.Disabled() {
		t.Errorf("Ensure of a deleted endpoint = %v, %v; want it, disabled, and a conflict", got, err)
	}
}
