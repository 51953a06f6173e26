package connect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

func TestNew(t *testing.T) {
	e := newEnv(t, autoApprove, nil)
	t.Run("OK", func(t *testing.T) {
		cfg := e.cfg
		cfg.Scopes, cfg.HTTPClient, cfg.Now, cfg.Logger, cfg.SessionTTL = nil, nil, nil, nil, 0
		cfg.AllowedReturnURLs = []string{"https://app.example.com", "http://localhost:3000/settings/"}
		if _, err := connect.New(cfg); err != nil {
			t.Errorf("New with optional fields zero: %v", err)
		}
	})

	tests := []struct {
		field string // must appear in the message
		edit  func(c *connect.Config)
	}{
		{"Provider", func(c *connect.Config) { c.Provider = tokenkeeper.Provider{} }},
		{"Provider", func(c *connect.Config) { c.Provider.TokenURL = "/oauth/token" }},
		{"ClientID", func(c *connect.Config) { c.ClientID = "" }},
		{"ClientID", func(c *connect.Config) { c.ClientID = "demo\nclient" }},
		{"ClientSecret", func(c *connect.Config) { c.ClientSecret = tokenkeeper.Secret{} }},
		{"RedirectURL", func(c *connect.Config) { c.RedirectURL = "" }},
		{"RedirectURL", func(c *connect.Config) { c.RedirectURL = "/oauth/callback" }},
		{"RedirectURL", func(c *connect.Config) { c.RedirectURL = "https://app.example.com/cb#frag" }},
		{"RedirectURL", func(c *connect.Config) { c.RedirectURL = "javascript:alert(1)" }},
		{"Scopes[1]", func(c *connect.Config) { c.Scopes = []string{"users:read", "users:read export-jobs:read"} }},
		{"Scopes[0]", func(c *connect.Config) { c.Scopes = []string{""} }},
		{"Store", func(c *connect.Config) { c.Store = nil }},
		{"Sealer", func(c *connect.Config) { c.Sealer = nil }},
		{"Keeper", func(c *connect.Config) { c.Keeper = nil }},
		{"SessionTTL", func(c *connect.Config) { c.SessionTTL = -time.Minute }},
		{"AllowedReturnURLs[0]", func(c *connect.Config) { c.AllowedReturnURLs = []string{"/relative"} }},
		{"AllowedReturnURLs[1]", func(c *connect.Config) {
			c.AllowedReturnURLs = []string{"https://ok.example", "javascript://x.example/"}
		}},
		{"AllowedReturnURLs[0]", func(c *connect.Config) { c.AllowedReturnURLs = []string{"https://x.example/?q=1"} }},
		{"AllowedReturnURLs[0]", func(c *connect.Config) { c.AllowedReturnURLs = []string{"https://x.example/a/../b"} }},
		{"AllowedReturnURLs[0]", func(c *connect.Config) { c.AllowedReturnURLs = []string{"https://u@x.example/"} }},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("Err%s/%d", strings.Trim(tt.field, "[]0123456789"), i), func(t *testing.T) {
			cfg := e.cfg
			tt.edit(&cfg)
			f, err := connect.New(cfg)
			if f != nil || tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
				t.Fatalf("New = %v, %v; want nil and a CodeInvalid error", f, err)
			}
			if msg := tokenkeeper.ErrorMessage(err); !strings.Contains(msg, tt.field) {
				t.Errorf("message %q does not name %s", msg, tt.field)
			}
		})
	}

	t.Run("SecretNotPrinted", func(t *testing.T) {
		for _, s := range []string{fmt.Sprintf("%v", e.flow), fmt.Sprintf("%+v", e.flow), fmt.Sprintf("%#v", e.flow)} {
			noSecrets(t, "the printed Flow", s, e.cfg.ClientSecret.Reveal())
		}
	})
}
