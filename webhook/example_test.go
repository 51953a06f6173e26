package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// ExampleSign signs a delivery the Standard Webhooks way.
func ExampleSign() {
	secret := tokenkeeper.NewSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	sig, err := webhook.Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

// ExampleVerify is a receiver of tokenkeeper's webhooks, written in Go.
func ExampleVerify() {
	secret := tokenkeeper.NewSecret("whsec_...") // the secret POST /v1/webhook-endpoints returned
	http.HandleFunc("POST /hooks/tokenkeeper", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		if err := webhook.Verify(secret, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Drop a repeat by r.Header.Get("webhook-id"), then act on the body
		// (a webhook.Message).
		w.WriteHeader(http.StatusNoContent)
	})
}

// ExamplePayload shows the body of a delivery.
func ExamplePayload() {
	e := &tokenkeeper.StoredEvent{ID: "evt_1", Event: tokenkeeper.Event{
		Type: tokenkeeper.EventReconnectRequired, ConnectionID: "customer-42", Subject: "urn:pleo:company:1",
		Reason: "invalid_grant", Time: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}}
	fmt.Println(string(webhook.Payload(e)))
	// Output: {"type":"connection.reconnect_required","timestamp":"2026-11-26T12:00:00Z","data":{"connection_id":"customer-42","subject":"urn:pleo:company:1","reason":"invalid_grant","time":"2026-11-26T12:00:00Z"}}
}
