package connect_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

func TestFlow_Begin_ReturnURL(t *testing.T) {
	allowed := []string{"https://app.example.com/settings", "http://localhost:3000/"}
	tests := []struct {
		url     string
		ok      bool // with allowed
		okByNil bool // with AllowedReturnURLs nil
	}{
		{"", true, true},
		{"/", true, true},
		{"/done", true, true},
		{"/done?tab=pleo#top", true, true},
		{"/a/../b", false, false}, // dot segments are refused: see the next two
		{"/.//evil.example", false, false},
		{"/a/..//evil.example", false, false},
		{"/a//b", false, false},
		{"/done?next=//x", true, true}, // the query is not a path
		{"done", false, false},
		{"?x=1", false, false},
		{"//evil.example/x", false, false},
		{"///evil.example/x", false, false},
		{"/\\evil.example", false, false},
		{"/\t/evil.example", false, false},
		{"/\n/evil.example", false, false},
		{" /done", false, false},
		{"https://app.example.com/settings", true, false},
		{"https://app.example.com/settings/", true, false},
		{"https://app.example.com/settings/pleo?x=1#y", true, false},
		{"https://APP.Example.com/settings", true, false},
		{"HTTPS://app.example.com/settings", true, false},
		{"https://app.example.com/settings-old", false, false},
		{"https://app.example.com/", false, false},
		{"https://app.example.com", false, false},
		{"https://app.example.com/settings/../admin", false, false},
		{"https://app.example.com/settings/%2e%2e/admin", false, false},
		{"https://app.example.com/settings/./x", false, false},
		{"http://app.example.com/settings", false, false},
		{"https://app.example.com:8443/settings", false, false},
		{"https://evil.example/settings", false, false},
		{"https://app.example.com.evil.example/settings", false, false},
		{"https://app.example.com@evil.example/settings", false, false},
		{"https://user@app.example.com/settings", false, false},
		{"https://app.example.com\\@evil.example/settings", false, false},
		{"http://localhost:3000", true, false},
		{"http://localhost:3000/anything/at/all", true, false},
		{"http://localhost:3001/", false, false},
		{"javascript:alert(1)", false, false},
		{"JavaScript:alert(1)//https://app.example.com/settings", false, false},
		{"data:text/html,<script>alert(1)</script>", false, false},
		{"ftp://app.example.com/settings", false, false},
		{"https:app.example.com/settings", false, false},
		{"/" + strings.Repeat("a", connect.MaxReturnURLLength), false, false},
	}
	withList := newEnv(t, autoApprove, func(e *env) { e.cfg.AllowedReturnURLs = allowed })
	withNil := newEnv(t, autoApprove, nil)
	for _, tt := range tests {
		for _, c := range []struct {
			e    *env
			name string
			ok   bool
		}{{withList, "allowed list", tt.ok}, {withNil, "nil list", tt.okByNil}} {
			_, err := c.e.flow.Begin(context.Background(), connect.BeginRequest{ConnectionID: "acme", ReturnURL: tt.url})
			switch {
			case c.ok && err != nil:
				t.Errorf("%s: Begin with return URL %.60q: %v", c.name, tt.url, err)
			case !c.ok && tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid:
				t.Errorf("%s: Begin with return URL %.60q: error %v, want CodeInvalid", c.name, tt.url, err)
			}
		}
	}
}
