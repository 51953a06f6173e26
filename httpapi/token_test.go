package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// TestServer_TokenRejected: a caller that got a 401 from the provider
// reports the token as {"rejected_token"}; the keeper refreshes only if it
// is still the connection's current token.
func TestServer_TokenRejected(t *testing.T) {
	e := newEnv(t)
	t.Run("OldToken", func(t *testing.T) {
		e.connect(t, "old")
		first := e.takeToken(t, "old", nil)
		if r := e.do(t, req{method: "POST", path: "/v1/connections/old/refresh", key: e.admin}); r.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", r.status, r.body)
		}
		current := e.takeToken(t, "old", nil)
		if current.Equal(first) {
			t.Fatal("the forced refresh did not change the token")
		}
		before := e.refreshCalls()
		if got := e.takeToken(t, "old", rejection(first)); !got.Equal(current) {
			t.Error("reporting a replaced token did not return the current one")
		}
		if n := e.refreshCalls() - before; n != 0 {
			t.Errorf("%d refreshes at the provider for a token already replaced, want 0", n)
		}
	})
	t.Run("CurrentToken20Callers", func(t *testing.T) {
		e.connect(t, "storm")
		stale := e.takeToken(t, "storm", nil)
		before := e.refreshCalls()
		const callers = 20
		got := make([]*response, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				r, err := e.send(tctx(t), req{method: "POST", path: "/v1/connections/storm/token", key: e.tokens, body: rejection(stale)})
				if err != nil {
					t.Error(err)
				}
				got[i] = r
			})
		}
		wg.Wait()
		var fresh tokenkeeper.Secret
		for i, r := range got {
			if r == nil {
				continue
			}
			want(t, r, http.StatusOK, "")
			var tok httpapi.TokenResponse
			r.decode(t, &tok)
			switch {
			case tok.AccessToken.Equal(stale):
				t.Errorf("caller %d got the rejected token back", i)
			case fresh.IsZero():
				fresh = tok.AccessToken
			case !tok.AccessToken.Equal(fresh):
				t.Errorf("caller %d got another fresh token than caller 0", i)
			}
		}
		if n := e.refreshCalls() - before; n != 1 {
			t.Errorf("%d refreshes at the provider for %d reports of one token, want 1", n, callers)
		}
		// Afterwards the fresh token is the one served, and reporting the
		// old one again costs nothing.
		if tok := e.takeToken(t, "storm", nil); !tok.Equal(fresh) {
			t.Error("a plain call after the reports did not return the fresh token")
		}
		if tok := e.takeToken(t, "storm", rejection(stale)); !tok.Equal(fresh) {
			t.Error("a late report of the old token did not return the fresh token")
		}
		if n := e.refreshCalls() - before; n != 1 {
			t.Errorf("%d refreshes at the provider after a late report, want still 1", n)
		}
	})
	t.Run("ReconnectRequired", func(t *testing.T) {
		e.connect(t, "dead")
		stale := e.takeToken(t, "dead", nil)
		e.revokeAtProvider(t) // dead's authorisation, the newest
		// Until the token is reported, the keeper keeps its promise.
		if tok := e.takeToken(t, "dead", nil); !tok.Equal(stale) {
			t.Fatal("the token changed before it was reported")
		}
		r := e.do(t, req{method: "POST", path: "/v1/connections/dead/token", key: e.tokens, body: rejection(stale)})
		want(t, r, http.StatusConflict, tokenkeeper.CodeReconnectRequired)
		if strings.Contains(string(r.body), "access_token") {
			t.Errorf("a reconnect_required answer holds a token field: %s", r.body)
		}
		r = e.do(t, req{method: "POST", path: "/v1/connections/dead/token", key: e.tokens})
		want(t, r, http.StatusConflict, tokenkeeper.CodeReconnectRequired)
	})
	t.Run("NotFound", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/v1/connections/nobody/token", key: e.tokens,
			body: map[string]string{"rejected_token": "tok-for-nobody-0123456789"}})
		want(t, r, http.StatusNotFound, tokenkeeper.CodeNotFound)
	})
}

// TestServer_TokenBody: the body is optional; when there is one it follows
// the API's JSON rules, with a precise 400 for a bad rejected_token, and
// the token it reports appears in no answer and no log.
func TestServer_TokenBody(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "acme")
	current := e.takeToken(t, "acme", nil)
	const secret = "rejected-token-never-echoed-0123456789"
	e.secrets.add("rejected token", secret) // checkLeaks looks for it everywhere
	big := `{"rejected_token":"` + secret + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `"}`
	for _, tt := range []struct {
		name   string
		body   any // as req.body
		ctype  string
		query  string
		status int
		code   tokenkeeper.Code
		msg    string
	}{
		{name: "NoBody", status: 200},
		{name: "Empty", body: "", status: 200},
		{name: "EmptyTextPlain", body: "", ctype: "text/plain", status: 200},
		{name: "EmptyObject", body: `{}`, status: 200},
		{name: "Charset", body: `{}`, ctype: "application/json; charset=utf-8", status: 200},
		{name: "NotCurrent", body: `{"rejected_token":"` + secret + `"}`, status: 200},
		{"Null", `{"rejected_token":null}`, "", "", 400, tokenkeeper.CodeInvalid, `field "rejected_token" must be a string, not null`},
		{"Number", `{"rejected_token":42}`, "", "", 400, tokenkeeper.CodeInvalid, `field "rejected_token" must be a string, not number`},
		{"Bool", `{"rejected_token":true}`, "", "", 400, tokenkeeper.CodeInvalid, `must be a string, not bool`},
		{"Object", `{"rejected_token":{"token":"` + secret + `"}}`, "", "", 400, tokenkeeper.CodeInvalid, `must be a string, not object`},
		{"Array", `{"rejected_token":["` + secret + `"]}`, "", "", 400, tokenkeeper.CodeInvalid, `must be a string, not array`},
		{"EmptyString", `{"rejected_token":""}`, "", "", 400, tokenkeeper.CodeInvalid, `field "rejected_token" must not be empty`},
		{"UnknownField", `{"rejected_token":"` + secret + `","status":401}`, "", "", 400, tokenkeeper.CodeInvalid, `unknown field "status"`},
		{"Misspelt", `{"rejectedToken":"` + secret + `"}`, "", "", 400, tokenkeeper.CodeInvalid, `unknown field "rejectedToken"`},
		{"Trailing", `{"rejected_token":"` + secret + `"} {}`, "", "", 400, tokenkeeper.CodeInvalid, "data after the JSON object"},
		{"Truncated", `{"rejected_token":"` + secret, "", "", 400, tokenkeeper.CodeInvalid, "truncated"},
		{"NotObject", `"` + secret + `"`, "", "", 400, tokenkeeper.CodeInvalid, "must be a JSON object"},
		{"Whitespace", "  \n", "", "", 400, tokenkeeper.CodeInvalid, "empty; want a JSON object"},
		{"NotUTF8", "{\"rejected_token\":\"" + secret + "\xff\"}", "", "", 400, tokenkeeper.CodeInvalid, "UTF-8"},
		{"InQuery", nil, "", "?rejected_token=" + secret, 400, tokenkeeper.CodeInvalid, `unknown query parameter "rejected_token"`},
		{"TooLarge", big, "", "", 413, httpapi.CodeTooLarge, "exceeds 65536 bytes"},
		{"NoContentType", `{"rejected_token":"` + secret + `"}`, "-", "", 415, httpapi.CodeUnsupportedMediaType, "application/json"},
		{"TextPlain", `{"rejected_token":"` + secret + `"}`, "text/plain", "", 415, httpapi.CodeUnsupportedMediaType, "application/json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			switch tt.ctype {
			case "-":
				h["Content-Type"] = ""
			case "":
			default:
				h["Content-Type"] = tt.ctype
			}
			before := e.refreshCalls()
			r := e.do(t, req{method: "POST", path: "/v1/connections/acme/token" + tt.query, key: e.tokens, body: tt.body, header: h})
			want(t, r, tt.status, tt.code)
			if n := e.refreshCalls() - before; n != 0 {
				t.Errorf("%d refreshes at the provider, want 0", n)
			}
			if tt.status == http.StatusOK {
				var tok httpapi.TokenResponse
				r.decode(t, &tok)
				if !tok.AccessToken.Equal(current) {
					t.Error("the answer is not the current token")
				}
				return
			}
			var b httpapi.ErrorBody
			r.decode(t, &b)
			if !strings.Contains(b.Error.Message, tt.msg) {
				t.Errorf("message %q, want it to say %q", b.Error.Message, tt.msg)
			}
		})
	}
	// A chunked body (no Content-Length) is only known empty once read.
	// These go straight to the handler: Go's client sends an empty body
	// with Content-Length: 0.
	for _, tt := range []struct {
		name, body, ctype string
		status            int
	}{
		{"ChunkedEmpty", "", "", 200},
		{"ChunkedEmptyObject", "{}", "application/json", 200},
		{"ChunkedTextPlain", "{}", "text/plain", 415},
		{"ChunkedNoContentType", `{"rejected_token":"` + secret + `"}`, "", 415},
		{"ChunkedTooLarge", big, "text/plain", 413},
		{"ChunkedEmptyString", `{"rejected_token":""}`, "application/json", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/connections/acme/token", io.MultiReader(strings.NewReader(tt.body)))
			if r.ContentLength != -1 {
				t.Fatalf("ContentLength %d, want -1 (unknown)", r.ContentLength)
			}
			r.Header.Set("Authorization", "Bearer "+e.tokens.Reveal())
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			w := httptest.NewRecorder()
			e.api.ServeHTTP(w, r)
			if w.Code != tt.status || strings.Contains(w.Body.String(), secret) {
				t.Errorf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
		})
	}
}

// takeToken calls the token route for id with body (nil for none) and
// returns the token, which it adds to the secrets.
func (e *env) takeToken(t testing.TB, id tokenkeeper.ConnectionID, body any) tokenkeeper.Secret {
	t.Helper()
	r := e.do(t, req{method: "POST", path: "/v1/connections/" + string(id) + "/token", key: e.tokens, body: body})
	want(t, r, http.StatusOK, "")
	var tok httpapi.TokenResponse
	r.decode(t, &tok)
	e.secrets.add(tokenkeeper.FieldAccessToken, tok.AccessToken.Reveal())
	return tok.AccessToken
}

// rejection is the body that reports tok refused by the provider.
func rejection(tok tokenkeeper.Secret) map[string]string {
	return map[string]string{"rejected_token": tok.Reveal()}
}

// refreshCalls counts the refresh_token grant requests the emulator has
// answered, whatever the outcome.
func (e *env) refreshCalls() int64 {
	var n int64
	for _, c := range e.srv.Report().Counters["refresh_token"] {
		n += c
	}
	return n
}
