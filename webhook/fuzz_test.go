package webhook_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

// FuzzVerify: Verify never panics on any headers and body, and accepts only
// what Sign signed.
func FuzzVerify(f *testing.F) {
	secret := tokenkeeper.NewSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	at := time.Unix(1_800_000_000, 0)
	good, _ := webhook.Sign(secret, "evt_1", at, []byte(`{}`))
	f.Add("evt_1", "1800000000", good, []byte(`{}`))
	f.Add("evt_1", "1800000000", "v1,"+good[3:]+" v2,xyz", []byte(`{}`))
	f.Add("", "", "", []byte(nil))
	f.Add("evt_1", "-9999999999999999999", "v1,", []byte("x"))
	f.Add("evt_1", "1800000000", "v1,====", []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		err := webhook.Verify(secret, h, body, at, webhook.DefaultTolerance)
		if err == nil {
			want, _ := webhook.Sign(secret, tokenkeeper.EventID(h.Get(webhook.HeaderID)), at, body)
			if h.Get(webhook.HeaderTimestamp) != "1800000000" || !containsField(h.Get(webhook.HeaderSignature), want) {
				t.Fatalf("accepted id %q ts %q sig %q", id, ts, sig)
			}
		}
	})
}

func containsField(s, want string) bool {
	for i := 0; i+len(want) <= len(s); i++ {
		if s[i:i+len(want)] == want && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return true
		}
	}
	return false
}

// FuzzCheckWebhookURL: the URL check never panics, and what it accepts is
// an http(s) URL without userinfo.
func FuzzCheckWebhookURL(f *testing.F) {
	for _, s := range []string{"https://a.example/x", "http://127.0.0.1:9/h", "ftp://a", "https://u:p@a/", "https:///x",
		"https://a.example/#f", "https://[::1]:8080/x", "HTTPS://A.EXAMPLE", "HTTP://A.EXAMPLE", "https://a.example/\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		insecure, err := tokenkeeper.CheckWebhookURL(raw)
		if err != nil {
			if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
				t.Fatalf("%q: %v, want invalid", raw, err)
			}
			return
		}
		if insecure != (len(raw) >= 5 && strings.EqualFold(raw[:5], "http:")) {
			t.Fatalf("%q: insecure = %v", raw, insecure)
		}
	})
}
