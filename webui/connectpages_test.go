package webui_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/webui"
)

func newPages(t *testing.T) *webui.ConnectPages {
	t.Helper()
	p, err := webui.NewConnectPages(webui.ConnectConfig{AppName: "Acme Books", Scopes: []string{"users:read", "export-jobs:write", "invoices:write"},
		AuthURL: "https://auth.pleo.io/oauth/authorize"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkPage checks what every connect page must be: HTML with a lang, a
// main landmark and a title; no script; its inline style allowed by hash.
func checkPage(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	body := w.Body.String()
	csp := w.Header().Get("Content-Security-Policy")
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if style == nil {
		t.Fatal("no inline style")
	}
	sum := sha256.Sum256([]byte(style[1]))
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || strings.Contains(csp, "unsafe") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q does not allow exactly the page's style", csp)
	}
	for _, s := range []string{`<html lang="en">`, "<main>", "<title>", "<h1>"} {
		if !strings.Contains(body, s) {
			t.Errorf("the page lacks %s", s)
		}
	}
	if strings.Contains(body, "<script") || w.Header().Get("Cache-Control") != "no-store" {
		t.Error("a script, or a cacheable page")
	}
	return body
}

func TestConnectPages_Landing(t *testing.T) {
	p := newPages(t)
	w := httptest.NewRecorder()
	p.Landing(w, httptest.NewRequest("GET", "/connect/x", nil))
	body := checkPage(t, w)
	for _, s := range []string{"Acme Books", "see the people in your company", "start exports of your expenses", "change your invoices",
		`<form method="post">`, "Continue to Pleo", "What happens next"} {
		if !strings.Contains(body, s) {
			t.Errorf("the landing page lacks %q", s)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://auth.pleo.io;") {
		t.Errorf("CSP %q: the form's redirect to the provider is not allowed", csp)
	}
	if len(w.Result().Cookies()) != 0 {
		t.Error("the landing page sets a cookie")
	}
}

func TestConnectPages_Outcome(t *testing.T) {
	p := newPages(t)
	w := httptest.NewRecorder()
	p.Outcome(w, httptest.NewRequest("GET", "/oauth/callback", nil), http.StatusOK, "acme", nil)
	if body := checkPage(t, w); !strings.Contains(body, "re connected</h1>") || !strings.Contains(body, "acme") {
		t.Errorf("success page:\n%s", body)
	}
	fe := func(r connect.Reason, code tokenkeeper.Code) error {
		return &connect.FlowError{Reason: r, Err: &tokenkeeper.Error{Code: code, Message: "secret-cause sector 7"}}
	}
	titles := map[string]bool{}
	for _, tt := range []struct {
		err    error
		method string
		title  string
	}{
		{fe(connect.ReasonDenied, tokenkeeper.CodeForbidden), "GET", "No access was given"},
		{fe(connect.ReasonLinkUnknown, tokenkeeper.CodeNotFound), "POST", "already been used"},
		{fe(connect.ReasonLinkExpired, tokenkeeper.CodeInvalid), "POST", "expired"},
		{fe(connect.ReasonStateExpired, tokenkeeper.CodeInvalid), "GET", "took too long"},
		{fe(connect.ReasonStateUnknown, tokenkeeper.CodeInvalid), "GET", "can't be used"},
		{fe(connect.ReasonStateMissing, tokenkeeper.CodeInvalid), "GET", "can't be used"},
		{fe(connect.ReasonWrongBrowser, tokenkeeper.CodeForbidden), "GET", "same browser"},
		{fe(connect.ReasonMissingCode, tokenkeeper.CodeInvalid), "GET", "incomplete"},
		{fe(connect.ReasonProviderError, tokenkeeper.CodeUnavailable), "GET", "not responding"},
		{fe(connect.ReasonProviderError, tokenkeeper.CodeInvalid), "GET", "could not be connected"},
		{fe(connect.ReasonExchangeFailed, tokenkeeper.CodeUnauthorized), "GET", "could not be connected"},
		{fe(connect.ReasonExchangeFailed, tokenkeeper.CodeUnavailable), "GET", "not responding"},
		{fe(connect.ReasonInternal, tokenkeeper.CodeUnavailable), "POST", "having trouble"},
		{fe(connect.ReasonInternal, tokenkeeper.CodeInternal), "GET", "Something went wrong"},
		{fmt.Errorf("plain: %w", tokenkeeper.Errorf(tokenkeeper.CodeInternal, "secret-cause")), "GET", "Something went wrong"},
	} {
		w := httptest.NewRecorder()
		p.Outcome(w, httptest.NewRequest(tt.method, "/x", nil), http.StatusBadRequest, "", tt.err)
		body := checkPage(t, w)
		h1 := regexp.MustCompile(`<h1>(.*?)</h1>`).FindStringSubmatch(body)
		if w.Code != http.StatusBadRequest || h1 == nil || !strings.Contains(h1[1], strings.ReplaceAll(tt.title, "'", "&#39;")) {
			t.Errorf("%v: %d, h1 %v, want %q", tt.err, w.Code, h1, tt.title)
		}
		if !strings.Contains(body, "What to do next") || strings.Contains(body, "secret-cause") || !strings.Contains(body, "reference") {
			t.Errorf("%v: no next step, a cause shown, or no reference:\n%s", tt.err, body)
		}
		retry := strings.Contains(body, "Try again</button>")
		var fErr *connect.FlowError
		if want := tt.method == "POST" && fmt.Sprint(tt.err) != "" && asFlow(tt.err, &fErr) && fErr.Reason == connect.ReasonInternal; retry != want {
			t.Errorf("%v: retry button %v, want %v", tt.err, retry, want)
		}
		titles[h1[1]] = true
	}
	if len(titles) < 10 {
		t.Errorf("only %d distinct titles for the failures", len(titles))
	}
}

func asFlow(err error, fe **connect.FlowError) bool {
	f, ok := err.(*connect.FlowError)
	*fe = f
	return ok
}

func TestScopeSentence(t *testing.T) {
	for scope, want := range map[string]string{
		"users:read": "see the people in your company", "accounts:write": "change your chart of accounts",
		"bank-feeds:read": "read your bank feeds", "x:admin": "use x (admin)", "openid": "use openid",
	} {
		if got := webui.ScopeSentence(scope); got != want {
			t.Errorf("ScopeSentence(%q) = %q, want %q", scope, got, want)
		}
	}
}
