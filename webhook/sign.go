package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// The Standard Webhooks headers that every delivery carries.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the webhook-signature value of a delivery in the Standard
// Webhooks scheme: "v1," and the standard base64 of HMAC-SHA256, keyed with
// the bytes secret's base64 encodes (after "whsec_"), of
// id + "." + the unix seconds of at + "." + body. CodeInvalid if secret is
// not a "whsec_" secret of 24 to 64 bytes.
func Sign(secret tokenkeeper.Secret, id tokenkeeper.EventID, at time.Time, body []byte) (string, error) {
	key, err := tokenkeeper.WebhookSecretKey(secret)
	if err != nil {
		return "", err
	}
	return sign(key, string(id), strconv.FormatInt(at.Unix(), 10), body), nil
}

func sign(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte("."))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SetHeaders sets the three Standard Webhooks headers of a delivery of
// event id made at at, and Content-Type: application/json.
func SetHeaders(h http.Header, secret tokenkeeper.Secret, id tokenkeeper.EventID, at time.Time, body []byte) error {
	sig, err := Sign(secret, id, at, body)
	if err != nil {
		return err
	}
	h.Set(HeaderID, string(id))
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, sig)
	h.Set("Content-Type", "application/json")
	return nil
}

// DefaultTolerance is how far a delivery's webhook-timestamp may be from
// the receiver's clock for [Verify] (Standard Webhooks' five minutes).
const DefaultTolerance = 5 * time.Minute

// Verify checks a delivery as a receiver would: the webhook-timestamp is
// within tolerance of now (replays of old deliveries are refused) and one
// of the space-separated "v1,<base64>" signatures in webhook-signature
// matches, compared in constant time. It returns a CodeUnauthorized error
// saying which check failed, or CodeInvalid for a malformed secret. It is
// for receivers written in Go and for tests of code that receives
// tokenkeeper's webhooks; any Standard Webhooks library does the same.
func Verify(secret tokenkeeper.Secret, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := tokenkeeper.WebhookSecretKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "the webhook headers are missing")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "the webhook timestamp is not a number")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "the webhook timestamp is %s away from now", d.Round(time.Second))
	}
	want := sign(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "no webhook signature matches")
}
