package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/logtest"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// failing is a Transport hook whose round trips fail with err.
func failing(err error) func(tokenkeeper.ConnectionID) http.RoundTripper {
	return func(tokenkeeper.ConnectionID) http.RoundTripper {
		return roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, err })
	}
}

func TestProxy_Forward_Errors(t *testing.T) {
	// secret stands for a cause that must reach the log but never the caller.
	const secret = "cause-for-the-log-only"
	cause := errors.New(secret)
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   tokenkeeper.Code
	}{
		{"NotFound", tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "connection nobody: %w", cause), 404, tokenkeeper.CodeNotFound},
		{"Invalid", tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "bad: %w", cause), 400, tokenkeeper.CodeInvalid},
		{"Conflict", tokenkeeper.Errorf(tokenkeeper.CodeConflict, "clash: %w", cause), 409, tokenkeeper.CodeConflict},
		{"Unauthorized", tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "who: %w", cause), 401, tokenkeeper.CodeUnauthorized},
		{"Forbidden", tokenkeeper.Errorf(tokenkeeper.CodeForbidden, "no: %w", cause), 403, tokenkeeper.CodeForbidden},
		{"Internal", tokenkeeper.Errorf(tokenkeeper.CodeInternal, "bug: %w", cause), 500, tokenkeeper.CodeInternal},
		{"ReconnectRequired", tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "grant dead: %w", cause), 409, tokenkeeper.CodeReconnectRequired},
		{"Unavailable", tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "provider down: %w", cause), 503, tokenkeeper.CodeUnavailable},
		{"Wrapped", fmt.Errorf("token: %w", tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "grant dead: %w", cause)), 409, tokenkeeper.CodeReconnectRequired},
		{"NotATokenError", cause, 502, tokenkeeper.CodeUnavailable}, // the upstream, unreachable
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logtest.Buffer{}
			front := frontServer(t, &proxy.Proxy{
				Target:    &url.URL{Scheme: "https", Host: "api.example"},
				Transport: failing(tt.err),
				Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
			})
			resp, body := do(t, newRequest(t, http.MethodGet, front.URL+"/connections/acme/proxy/v2/employees?secret=q", nil))
			if resp.StatusCode != tt.wantStatus || errorCode(body) != string(tt.wantCode) {
				t.Fatalf("status %d, body %s; want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("the caller saw the cause: %s", body)
			}
			if got := logs.String(); !strings.Contains(got, secret) || strings.Contains(got, "secret=q") || strings.Count(got, "\n") != 1 {
				t.Errorf("want the cause logged once, without the query string; log:\n%s", got)
			}
		})
	}
}

func TestProxy_Forward_ErrorHook(t *testing.T) {
	var got error
	var gotReq *http.Request
	p := &proxy.Proxy{
		Target:    &url.URL{Scheme: "https", Host: "api.example"},
		Transport: failing(tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "grant dead")),
		Error: func(w http.ResponseWriter, r *http.Request, err error) {
			got, gotReq = err, r
			w.WriteHeader(http.StatusTeapot)
		},
	}
	in := httptest.NewRequest(http.MethodGet, "/connections/acme/proxy/v2/employees", nil)
	w := httptest.NewRecorder()
	p.Forward(w, in, "acme", "/v2/employees")
	if w.Code != http.StatusTeapot || tokenkeeper.ErrorCode(got) != tokenkeeper.CodeReconnectRequired {
		t.Fatalf("status %d, err %v; want the hook called with reconnect_required", w.Code, got)
	}
	if gotReq.URL.Path != in.URL.Path {
		t.Errorf("the hook got the request for %q, want the inbound one", gotReq.URL.Path)
	}
}

func TestProxy_Forward_Misconfigured(t *testing.T) {
	for name, p := range map[string]*proxy.Proxy{
		"NoTarget":       {Transport: bearer("x")},
		"NoTransport":    {Target: &url.URL{Scheme: "https", Host: "api.example"}},
		"RelativeTarget": {Target: &url.URL{Path: "/api"}, Transport: bearer("x")},
		"FTPTarget":      {Target: &url.URL{Scheme: "ftp", Host: "api.example"}, Transport: bearer("x")},
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			p.Forward(w, httptest.NewRequest(http.MethodGet, "/", nil), "acme", "/v2/employees")
			if w.Code != http.StatusInternalServerError || errorCode(w.Body.Bytes()) != "internal" {
				t.Fatalf("status %d, body %s; want 500 internal", w.Code, w.Body)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{&tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Err: errors.Join(proxy.ErrTimeout, context.Canceled)}, 504},
		{&tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Err: proxy.ErrUnreachable}, 502},
		{tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "busy"), 503},
		{errors.New("plain"), 500},
		{&tokenkeeper.Error{Code: "bogus"}, 500},
	} {
		if got := proxy.Status(tt.err); got != tt.want {
			t.Errorf("Status(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
