package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// verifyFromSpec is a receiver's check written from the Standard Webhooks
// specification, not from this package: the signed content is
// "${webhook-id}.${webhook-timestamp}.${body}", the key is the base64 after
// the "whsec_" prefix, and webhook-signature is a space-delimited list of
// "v1,<base64 HMAC-SHA256>".
func verifyFromSpec(t *testing.T, secret string, h http.Header, body []byte) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		t.Fatalf("webhook-timestamp %q is not integer seconds", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	expected := mac.Sum(nil)
	for _, sig := range strings.Split(h.Get("webhook-signature"), " ") {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, expected) {
			return
		}
	}
	t.Fatalf("no signature in %q verifies", h.Get("webhook-signature"))
}

func TestSign_IndependentVerifier(t *testing.T) {
	secret := tokenkeeper.NewWebhookSecret()
	if !strings.HasPrefix(secret.Reveal(), "whsec_") {
		t.Fatalf("secret does not start with whsec_")
	}
	body := webhook.Payload(&tokenkeeper.StoredEvent{ID: "evt_1", Event: tokenkeeper.Event{
		Type: tokenkeeper.EventReconnectRequired, ConnectionID: "c1", Subject: "urn:pleo:company:x", Reason: "invalid_grant", Time: time.Now()}})
	h := http.Header{}
	at := time.Unix(1_800_000_000, 0)
	if err := webhook.SetHeaders(h, secret, "evt_1", at, body); err != nil {
		t.Fatal(err)
	}
	if h.Get("webhook-id") != "evt_1" || h.Get("webhook-timestamp") != "1800000000" {
		t.Fatalf("headers = %v", h)
	}
	verifyFromSpec(t, secret.Reveal(), h, body)
	if err := webhook.Verify(secret, h, body, at.Add(time.Minute), webhook.DefaultTolerance); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// TestSign_KnownVector: the example of the Standard Webhooks
// specification's reference libraries.
func TestSign_KnownVector(t *testing.T) {
	secret := tokenkeeper.NewSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got, err := webhook.Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestVerify_Refuses(t *testing.T) {
	secret := tokenkeeper.NewWebhookSecret()
	body := []byte(`{"type":"connection.connected"}`)
	at := time.Unix(1_800_000_000, 0)
	h := http.Header{}
	if err := webhook.SetHeaders(h, secret, "evt_1", at, body); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		secret tokenkeeper.Secret
		body   []byte
		now    time.Time
	}{
		"OtherSecret": {tokenkeeper.NewWebhookSecret(), body, at},
		"OtherBody":   {secret, []byte(`{"type":"connection.disconnected"}`), at},
		"TooOld":      {secret, body, at.Add(6 * time.Minute)},
	} {
		if err := webhook.Verify(tc.secret, h, tc.body, tc.now, webhook.DefaultTolerance); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeUnauthorized {
			t.Errorf("%s: Verify = %v, want unauthorized", name, err)
		}
	}
	if _, err := webhook.Sign(tokenkeeper.NewSecret("whsec_c2hvcnQ="), "e", at, body); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
		t.Errorf("a 5-byte key: %v, want invalid", err)
	}
}

func TestPayload_Exact(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.FixedZone("x", 3600))
	got := string(webhook.Payload(&tokenkeeper.StoredEvent{ID: "evt_1", Event: tokenkeeper.Event{
		Type: tokenkeeper.EventDegraded, ConnectionID: "c1", Subject: "urn:pleo:company:1", Reason: "token endpoint: 503", Time: at}}))
	want := `{"type":"connection.degraded","timestamp":"2026-11-26T11:00:00.123456Z","data":{"connection_id":"c1","subject":"urn:pleo:company:1","reason":"token endpoint: 503","time":"2026-11-26T11:00:00.123456Z"}}`
	if got != want {
		t.Errorf("Payload =\n%s\nwant\n%s", got, want)
	}
	test := string(webhook.Payload(&tokenkeeper.StoredEvent{ID: "evt_2", Event: tokenkeeper.Event{Type: tokenkeeper.EventWebhookTest, Time: at}}))
	if !strings.HasPrefix(test, `{"type":"webhook.test",`) {
		t.Errorf("test payload = %s", test)
	}
}
