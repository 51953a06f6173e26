package webhook

import (
	"encoding/json"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Message is the JSON body of every delivery (Standard Webhooks' shape):
//
//	{
//	  "type": "connection.reconnect_required",
//	  "timestamp": "2026-11-26T12:00:00.123456Z",
//	  "data": {
//	    "connection_id": "customer-42",
//	    "subject": "urn:pleo:company:3f1c...",
//	    "reason": "the grant was revoked (invalid_grant)",
//	    "time": "2026-11-26T12:00:00.123456Z"
//	  }
//	}
//
// type is "connection.connected", "connection.degraded",
// "connection.recovered", "connection.reconnect_required",
// "connection.disconnected", or "webhook.test" for a test event (whose
// connection_id and subject are ""). timestamp and data.time are when the
// change happened (RFC 3339, UTC), not when it was sent: a retry carries
// the same body. subject and reason may be "". The event id is the
// webhook-id header. No token is ever part of it. New fields may be added
// to data; receivers ignore those they do not know.
type Message struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      MessageData `json:"data"`
}

// MessageData is a [Message]'s data.
type MessageData struct {
	ConnectionID tokenkeeper.ConnectionID `json:"connection_id"`
	Subject      string                   `json:"subject"`
	Reason       string                   `json:"reason"`
	Time         time.Time                `json:"time"`
}

// Payload returns the body of every delivery of e: the JSON of its
// [Message]. It depends only on e, so every attempt sends the same bytes.
func Payload(e *tokenkeeper.StoredEvent) []byte {
	at := e.Time.UTC()
	b, err := json.Marshal(Message{
		Type:      e.Type.WireType(),
		Timestamp: at,
		Data:      MessageData{ConnectionID: e.ConnectionID, Subject: e.Subject, Reason: e.Reason, Time: at},
	})
	if err != nil {
		panic(err) // strings and times always marshal
	}
	return b
}
