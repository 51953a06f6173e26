package connect

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// validate checks cfg and returns its parsed AllowedReturnURLs. Errors are
// CodeInvalid and name the field.
func validate(cfg *Config) ([]allowedPrefix, error) {
	bad := func(format string, args ...any) error {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "connect config: "+format, args...)
	}
	if err := cfg.Provider.Validate(); err != nil {
		return nil, bad("Provider: %s", tokenkeeper.ErrorMessage(err))
	}
	switch {
	case cfg.ClientID == "":
		return nil, bad("ClientID is empty")
	case hasControl(cfg.ClientID):
		return nil, bad("ClientID holds a control character")
	case cfg.ClientSecret.IsZero():
		return nil, bad("ClientSecret is empty")
	case cfg.Store == nil:
		return nil, bad("Store is nil")
	case cfg.Sealer == nil:
		return nil, bad("Sealer is nil")
	case cfg.Keeper == nil:
		return nil, bad("Keeper is nil")
	case cfg.SessionTTL < 0:
		return nil, bad("SessionTTL %s is negative", cfg.SessionTTL)
	case cfg.LinkTTL < 0 || cfg.LinkTTL > MaxLinkTTL:
		return nil, bad("LinkTTL %s is not between 0 and %s", cfg.LinkTTL, MaxLinkTTL)
	}
	// RFC 6749 section 3.1.2: an absolute URI without a fragment.
	u, err := url.Parse(cfg.RedirectURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return nil, bad("RedirectURL %q is not an absolute http(s) URL without a fragment", cfg.RedirectURL)
	}
	for i, s := range cfg.Scopes {
		if !validScope(s) {
			return nil, bad("Scopes[%d] %q is not an RFC 6749 scope token", i, s)
		}
	}
	allowed := make([]allowedPrefix, 0, len(cfg.AllowedReturnURLs))
	for i, raw := range cfg.AllowedReturnURLs {
		p, err := parseAllowed(raw)
		if err != nil {
			return nil, bad("AllowedReturnURLs[%d] %q %s", i, raw, err.Error())
		}
		allowed = append(allowed, p)
	}
	return allowed, nil
}

// validScope reports whether s is a scope-token: 1*( %x21 / %x23-5B /
// %x5D-7E ), RFC 6749 section 3.3.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// allowedPrefix is one parsed entry of Config.AllowedReturnURLs.
type allowedPrefix struct {
	scheme, host string // lower case
	path         string // "/" or a path without a trailing slash
}

// parseAllowed parses an AllowedReturnURLs entry. The error text completes a
// sentence that names the entry.
func parseAllowed(raw string) (allowedPrefix, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || strings.ContainsAny(raw, "\\ ") || hasControl(raw):
		return allowedPrefix{}, fmt.Errorf("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return allowedPrefix{}, fmt.Errorf("is not an http(s) URL")
	case u.Host == "" || u.User != nil:
		return allowedPrefix{}, fmt.Errorf("needs a host and no user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return allowedPrefix{}, fmt.Errorf("may not have a query or a fragment")
	case hasDotSegment(u.Path):
		return allowedPrefix{}, fmt.Errorf("may not have . or .. path segments")
	}
	p := strings.TrimRight(u.Path, "/")
	if p == "" {
		p = "/"
	}
	return allowedPrefix{scheme: u.Scheme, host: strings.ToLower(u.Host), path: p}, nil
}

// hasDotSegment reports whether the decoded path has a "." or ".." segment,
// which a browser would resolve (RFC 3986 section 5.2.4), escaping a prefix.
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
