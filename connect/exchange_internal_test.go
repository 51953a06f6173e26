package connect

import (
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
)

// The emulator always answers in JSON with a scope; these cases cover the
// answers it never gives.
func TestFlow_grant(t *testing.T) {
	f := &Flow{provider: tokenkeeper.Provider{Name: "custom"}, scopes: []string{"users:read", "test:test"}}
	sent := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		tok        *oauth2.Token
		wantExpiry time.Time
		wantScopes []string
		wantScope  string
	}{
		{
			name:       "JSON",
			tok:        (&oauth2.Token{ExpiresIn: 900}).WithExtra(map[string]any{"expires_in": 900.0, "scope": "users:read"}),
			wantExpiry: sent.Add(15 * time.Minute), wantScopes: []string{"users:read"}, wantScope: "users:read",
		},
		{
			name:       "Form",
			tok:        (&oauth2.Token{}).WithExtra(url.Values{"expires_in": {"60"}, "scope": {"a:b  c:d"}}),
			wantExpiry: sent.Add(time.Minute), wantScopes: []string{"a:b", "c:d"}, wantScope: "a:b  c:d",
		},
		{
			name:       "NULAndInvalidUTF8",
			tok:        (&oauth2.Token{}).WithExtra(url.Values{"scope": {"users:read\x00x\xff test:test"}}),
			wantScopes: []string{"users:readx\uFFFD", "test:test"}, wantScope: "users:readx\uFFFD test:test",
		},
		{
			name:       "JSONNUL",
			tok:        (&oauth2.Token{}).WithExtra(map[string]any{"scope": "users:read\u0000x"}),
			wantScopes: []string{"users:readx"}, wantScope: "users:readx",
		},
		{
			name:       "NoExpiresInNoScope",
			tok:        (&oauth2.Token{}).WithExtra(map[string]any{}),
			wantScopes: []string{"users:read", "test:test"}, wantScope: "users:read test:test",
		},
		{
			name:       "AbsurdExpiresIn",
			tok:        (&oauth2.Token{ExpiresIn: 1 << 62}).WithExtra(map[string]any{"scope": ""}),
			wantExpiry: sent.Add(maxExpiresIn * time.Second), wantScopes: []string{"users:read", "test:test"},
			wantScope: "users:read test:test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := f.grant("acme", tt.tok, sent)
			if !g.Tokens.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Expiry = %v, want %v", g.Tokens.Expiry, tt.wantExpiry)
			}
			if diff := cmp.Diff(tt.wantScopes, g.Scopes); diff != "" || g.Tokens.Scope != tt.wantScope {
				t.Errorf("Scope %q, Scopes (-want +got):\n%s; want scope %q", g.Tokens.Scope, diff, tt.wantScope)
			}
		})
	}
}
