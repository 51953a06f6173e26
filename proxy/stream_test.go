package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// testContext bounds a test that would hang if streaming broke.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProxy_Forward_Stream(t *testing.T) {
	for _, tt := range []struct {
		name   string
		length string // the upstream's Content-Length; "" streams chunked
	}{{"Response", ""}, {"ResponseKnownLength", "13"}} {
		t.Run(tt.name, func(t *testing.T) { testStreamResponse(t, tt.length) })
	}

	t.Run("Request", func(t *testing.T) {
		gotFirst := make(chan struct{})
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			first := make([]byte, len("first\n"))
			if _, err := io.ReadFull(r.Body, first); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			close(gotFirst)
			rest, _ := io.ReadAll(r.Body)
			_, _ = w.Write(append(first, rest...))
		})
		// A bound below the first chunk: the body streams as soon as the
		// proxy knows it will not fit.
		front := frontServer(t, &proxy.Proxy{Target: up.url(t, ""), Transport: bearer("constant"), MaxReplayBody: 4})
		pr, pw := io.Pipe()
		req := newRequest(t, http.MethodPost, front.URL+"/connections/acme/proxy/upload", pr).WithContext(testContext(t))
		done := make(chan struct{})
		var resp *http.Response
		var body []byte
		var err error
		go func() {
			defer close(done)
			if resp, err = http.DefaultClient.Do(req); err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
		}()
		if _, err := io.WriteString(pw, "first\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-gotFirst: // the upstream read it while the client still writes
		case <-done:
			t.Fatalf("the request ended before the body did: %v", err)
		}
		_, _ = io.WriteString(pw, "second\n")
		pw.Close()
		<-done
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "first\nsecond\n" {
			t.Fatalf("status %v, body %q, err %v; want 200 and the whole body echoed", resp, body, err)
		}
	})
}

func TestProxy_Forward_Timeout(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before up.Close, which waits for handlers
	front := frontServer(t, &proxy.Proxy{Target: up.url(t, ""), Transport: bearer("constant"), Timeout: 50 * time.Millisecond})
	resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/slow", nil))
	if resp.StatusCode != http.StatusGatewayTimeout || errorCode(body) != "unavailable" {
		t.Fatalf("status %d, body %s; want 504 unavailable", resp.StatusCode, body)
	}
	select {
	case <-arrived:
	case <-testContext(t).Done():
		t.Fatal("the request never reached the upstream")
	}
}

func TestProxy_Forward_Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	front := frontServer(t, &proxy.Proxy{Target: &url.URL{Scheme: "http", Host: addr}, Transport: bearer("constant")})
	resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/v2/employees", nil))
	if resp.StatusCode != http.StatusBadGateway || errorCode(body) != "unavailable" {
		t.Fatalf("status %d, body %s; want 502 unavailable", resp.StatusCode, body)
	}
	if strings.Contains(string(body), addr) {
		t.Fatalf("the error body %s reveals the upstream address", body)
	}
}

// testStreamResponse checks that the client reads the upstream's first
// chunk before the upstream writes the second.
func testStreamResponse(t *testing.T, length string) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if length != "" {
			w.Header().Set("Content-Length", length)
		}
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	})
	front := frontServer(t, &proxy.Proxy{Target: up.url(t, ""), Transport: bearer("constant")})
	req := newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/events", nil).WithContext(testContext(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first\n"))
	_, err = io.ReadFull(resp.Body, first)
	close(release) // only now may the upstream finish
	if err != nil || string(first) != "first\n" {
		t.Fatalf("read %q (%v) before the upstream finished; want %q", first, err, "first\n")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("then read %q (%v), want %q", rest, err, "second\n")
	}
}
