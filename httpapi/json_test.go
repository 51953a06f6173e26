package httpapi_test

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// TestServer_JSONBodies: each way a body can be wrong gets its own status
// and a message that says what was wrong.
func TestServer_JSONBodies(t *testing.T) {
	e := newEnv(t)
	big := `{"connection_id":"acme","return_to":"/` + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `"}`
	for _, tt := range []struct {
		name   string
		body   string
		ctype  string
		status int
		code   tokenkeeper.Code
		msg    string
	}{
		{"Malformed", `{"connection_id":`, "", 400, tokenkeeper.CodeInvalid, "truncated"},
		{"Syntax", `{"connection_id" "acme"}`, "", 400, tokenkeeper.CodeInvalid, "malformed JSON at byte"},
		{"UnknownField", `{"connection_id":"acme","retrun_to":"/"}`, "", 400, tokenkeeper.CodeInvalid, `unknown field "retrun_to"`},
		{"Trailing", `{"connection_id":"acme"} {"x":1}`, "", 400, tokenkeeper.CodeInvalid, "data after the JSON object"},
		{"TrailingGarbage", `{"connection_id":"acme"}garbage`, "", 400, tokenkeeper.CodeInvalid, "after the JSON object"},
		{"WrongType", `{"connection_id":42}`, "", 400, tokenkeeper.CodeInvalid, `field "connection_id" must be a string, not number`},
		{"Array", `[{"connection_id":"acme"}]`, "", 400, tokenkeeper.CodeInvalid, "must be a JSON object"},
		{"Null", `null`, "", 400, tokenkeeper.CodeInvalid, "must be a JSON object"},
		{"Empty", ``, "", 400, tokenkeeper.CodeInvalid, "empty"},
		{"NotUTF8", "{\"connection_id\":\"acme\",\"return_to\":\"/\xff\"}", "", 400, tokenkeeper.CodeInvalid, "UTF-8"},
		{"TooLarge", big, "", 413, httpapi.CodeTooLarge, "exceeds 65536 bytes"},
		{"NoContentType", `{"connection_id":"acme"}`, "-", 415, httpapi.CodeUnsupportedMediaType, "application/json"},
		{"TextPlain", `{"connection_id":"acme"}`, "text/plain", 415, httpapi.CodeUnsupportedMediaType, "application/json"},
		{"FormEncoded", `connection_id=acme`, "application/x-www-form-urlencoded", 415, httpapi.CodeUnsupportedMediaType, "application/json"},
		{"Charset", `{"connection_id":"acme"}`, "application/json; charset=utf-8", 201, "", ""},
	} {
		for _, path := range []string{"/v1/connect-sessions", "/v1/api-keys"} {
			t.Run(tt.name+path, func(t *testing.T) {
				h := map[string]string{}
				switch tt.ctype {
				case "-":
					h["Content-Type"] = ""
				case "":
				default:
					h["Content-Type"] = tt.ctype
				}
				body := tt.body
				if path == "/v1/api-keys" {
					body = strings.ReplaceAll(strings.ReplaceAll(body, "connection_id", "name"), "return_to", "scopes")
					if tt.status == 201 {
						body = `{"name":"acme","scopes":["tokens"]}`
					}
				}
				r := e.do(t, req{method: "POST", path: path, key: e.admin, body: body, header: h})
				if tt.status == 201 {
					want(t, r, 201, "")
					if path == "/v1/api-keys" {
						var k httpapi.CreatedAPIKey
						r.decode(t, &k)
						e.secrets.add("api key", k.Key.Reveal())
					} else {
						var s httpapi.ConnectSession
						r.decode(t, &s)
						e.secrets.add("link", strings.TrimPrefix(s.URL, "https://tk.example/base/connect/"))
					}
					return
				}
				want(t, r, tt.status, tt.code)
				var b httpapi.ErrorBody
				r.decode(t, &b)
				msg := tt.msg
				if path == "/v1/api-keys" {
					msg = strings.ReplaceAll(msg, "connection_id", "name")
				}
				if !strings.Contains(b.Error.Message, msg) {
					t.Errorf("message %q, want it to say %q", b.Error.Message, msg)
				}
			})
		}
	}
}

// TestServer_Unmatched: unknown paths are a JSON 404, a known path with
// another method a JSON 405 with Allow.
func TestServer_Unmatched(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/nothing", 404, ""},
		{"GET", "/v1/connections/x/tokens", 404, ""},
		{"GET", "/v1/connections/", 404, ""},
		{"GET", "/nothing", 404, ""},
		{"PUT", "/v1/connections/x", 405, "GET, HEAD, DELETE"},
		{"GET", "/v1/connections/x/token", 405, "POST"},
		{"DELETE", "/v1/connections", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"PATCH", "/v1/api-keys", 405, "GET, HEAD, POST"},
		{"GET", "/v1/connections/a/../b", 400, ""},
		{"GET", "/v1/connections/./b", 400, ""},
	} {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			r := e.do(t, req{method: tt.method, path: tt.path, key: e.admin})
			code := map[int]tokenkeeper.Code{404: tokenkeeper.CodeNotFound, 405: httpapi.CodeMethodNotAllowed, 400: tokenkeeper.CodeInvalid}[tt.status]
			want(t, r, tt.status, code)
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}
