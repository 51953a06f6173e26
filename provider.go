package tokenkeeper

import (
	"net/url"
)

// Provider is an OAuth 2.0 provider profile: where its endpoints are. The
// zero value is not usable; start from [PleoProvider], [PleoStagingProvider]
// or fill in every URL (a "custom" profile, which is how the emulator is
// used).
type Provider struct {
	// Name is "pleo", "pleo-staging" or "custom".
	Name string
	// AuthURL is the authorization endpoint (RFC 6749 section 3.1).
	AuthURL string
	// TokenURL is the token endpoint (RFC 6749 section 3.2).
	TokenURL string
	// APIURL is the base URL of the API, without a trailing slash;
	// {APIURL}/v1/introspect tells who a token is for.
	APIURL string
}

// The provider profile names.
const (
	ProviderPleo        = "pleo"
	ProviderPleoStaging = "pleo-staging"
	ProviderCustom      = "custom"
)

// PleoProvider returns Pleo's production profile.
func PleoProvider() Provider {
	return Provider{
		Name:     ProviderPleo,
		AuthURL:  "https://auth.pleo.io/oauth/authorize",
		TokenURL: "https://auth.pleo.io/oauth/token",
		APIURL:   "https://external.pleo.io",
	}
}

// PleoStagingProvider returns Pleo's staging profile.
func PleoStagingProvider() Provider {
	return Provider{
		Name:     ProviderPleoStaging,
		AuthURL:  "https://auth.staging.pleo.io/oauth/authorize",
		TokenURL: "https://auth.staging.pleo.io/oauth/token",
		APIURL:   "https://external.staging.pleo.io",
	}
}

// CustomProvider returns a custom profile with the given URLs, such as the
// emulator's: CustomProvider(srv.URL+"/oauth/authorize",
// srv.URL+"/oauth/token", srv.APIURL).
func CustomProvider(authURL, tokenURL, apiURL string) Provider {
	return Provider{Name: ProviderCustom, AuthURL: authURL, TokenURL: tokenURL, APIURL: apiURL}
}

// Validate reports whether p is complete: a name and absolute http or https
// URLs. It returns a [CodeInvalid] error naming the first bad field.
func (p Provider) Validate() error {
	if p.Name == "" {
		return Errorf(CodeInvalid, "provider: name is empty")
	}
	for _, f := range []struct{ name, value string }{
		{"auth URL", p.AuthURL}, {"token URL", p.TokenURL}, {"API URL", p.APIURL},
	} {
		u, err := url.Parse(f.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Errorf(CodeInvalid, "provider %s: %s %q is not an absolute http(s) URL", p.Name, f.name, f.value)
		}
	}
	return nil
}
