package proxy_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

const jobPayload = `{"from":"2026-02-01","to":"2026-02-28"}`

// killInFlight sends a proxied POST /v1/export-jobs and, while the emulator
// holds it (an injected latency, after it has checked the token and before
// it answers), kills the token with kill. The emulator then answers 401
// with no violation: the token was alive when sent. The latency applies to
// that one request only. It returns the response.
func killInFlight(t *testing.T, e *env, front string, body io.Reader, kill func()) (*http.Response, string) {
	t.Helper()
	hold := emulator.Duration(500 * time.Millisecond)
	// The script's one entry is consumed when the emulator draws the
	// request's fault, just after its token check.
	e.faults(emulator.Faults{emulator.EndpointAPI: {Latency: &emulator.Latency{Min: hold, Max: hold}, Script: []string{emulator.FaultNone}}})
	type result struct {
		resp *http.Response
		body string
	}
	done := make(chan result, 1)
	req := newRequest(t, http.MethodPost, front+"/connections/acme/proxy/v1/export-jobs", body)
	req.Header.Set("Content-Type", "application/json")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Errorf("POST: %v", err)
			done <- result{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp, string(b)}
	}()
	waitFor(t, "the emulator to hold the request", func() bool {
		return len(e.srv.Faults()[emulator.EndpointAPI].Script) == 0
	})
	kill()
	e.faults(nil) // the retry, if any, is not held
	r := <-done
	if r.resp == nil {
		t.FailNow()
	}
	return r.resp, r.body
}

func TestProxy_Forward_Retry401(t *testing.T) {
	tests := []struct {
		name string
		kill func(t *testing.T, e *env)
	}{
		// The emulator's clock (the keeper's too) passes the token's expiry:
		// the keeper refreshes once, on Invalidate.
		{"Expired", func(t *testing.T, e *env) { e.expire() }},
		// Another keeper on the store forces a refresh, rotating the token
		// out: Invalidate adopts its token from the store, refreshing nothing.
		{"Rotated", func(t *testing.T, e *env) {
			if _, err := e.newKeeper().Refresh(context.Background(), "acme"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.connect("acme")
			front := e.proxy()
			resp, body := killInFlight(t, e, front.URL, strings.NewReader(jobPayload), func() { tt.kill(t, e) })
			if resp.StatusCode != http.StatusCreated || !strings.Contains(body, `"from":"2026-02-01"`) {
				t.Fatalf("status %d, body %s; want 201 with the job of the period sent", resp.StatusCode, body)
			}
			sent := e.sent.all()
			if len(sent) != 2 {
				t.Fatalf("%d requests sent upstream, want 2 (the first and one retry)", len(sent))
			}
			for i, s := range sent {
				if s.body.String() != jobPayload {
					t.Errorf("attempt %d sent body %q, want %q", i+1, s.body.String(), jobPayload)
				}
			}
			if sent[0].Auth == sent[1].Auth {
				t.Error("the retry used the refused token")
			}
			if n := e.refreshes(); n != 1 {
				t.Errorf("%d refreshes, want exactly 1", n)
			}
			if ok, bad := e.apiCount("ok"), e.apiCount("invalid_token"); ok != 1 || bad != 1 {
				t.Errorf("API outcomes ok=%d invalid_token=%d, want 1 and 1", ok, bad)
			}
		})
	}
}

// onlyReader hides the reader's type, so the request has no known length.
type onlyReader struct{ io.Reader }

func TestProxy_Forward_NoReplayLargeBody(t *testing.T) {
	tests := []struct {
		name string
		body func() io.Reader
	}{
		{"KnownLength", func() io.Reader { return strings.NewReader(jobPayload) }},
		{"UnknownLength", func() io.Reader { return onlyReader{strings.NewReader(jobPayload)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.connect("acme")
			front := e.proxy(func(p *proxy.Proxy) { p.MaxReplayBody = 16 })
			resp, body := killInFlight(t, e, front.URL, tt.body(), e.expire)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, body %s; want the API's 401 handed back", resp.StatusCode, body)
			}
			sent := e.sent.all()
			if len(sent) != 1 || sent[0].body.String() != jobPayload {
				t.Fatalf("%d requests sent upstream; want 1, with the whole body streamed", len(sent))
			}
			// The 401 still reports the token dead (one refresh), so the
			// next call gets a live token; this one is not resent.
			if n := e.refreshes(); n != 1 {
				t.Errorf("%d refreshes, want 1", n)
			}
		})
	}
}
