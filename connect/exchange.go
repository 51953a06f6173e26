package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/oautherr"
	"github.com/tokenkeeper/tokenkeeper/internal/providertext"
)

// exchange redeems code (RFC 6749 section 4.1.3) and returns the grant.
func (f *Flow) exchange(ctx context.Context, id tokenkeeper.ConnectionID, code, verifier string) (tokenkeeper.Grant, *FlowError) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, f.client)
	// The expiry counts from before the request left: expires_in is
	// relative to when the provider issued the token, which is no earlier.
	sent := f.now()
	tok, err := f.oauthConfig().Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return tokenkeeper.Grant{}, exchangeError(err)
	}
	if tok.RefreshToken == "" {
		// Without a refresh token the connection would die with its access
		// token, and keeping it alive is the whole point.
		return tokenkeeper.Grant{}, newFlowError(ReasonExchangeFailed, tokenkeeper.CodeUnavailable,
			"the provider issued no refresh token; start connecting again", nil)
	}
	return f.grant(id, tok, sent), nil
}

// grant turns the token response to a request sent at sent into a Grant.
func (f *Flow) grant(id tokenkeeper.ConnectionID, tok *oauth2.Token, sent time.Time) tokenkeeper.Grant {
	var expiry time.Time
	if secs := expiresIn(tok); secs > 0 {
		expiry = sent.Add(time.Duration(min(secs, maxExpiresIn)) * time.Second)
	}
	scope, _ := tok.Extra("scope").(string)
	// Provider text: the store refuses NUL and invalid UTF-8.
	scope = providertext.Clean(scope)
	scopes := strings.Fields(scope)
	if len(scopes) == 0 {
		// RFC 6749 section 5.1: no scope means the scope requested.
		scopes = append([]string(nil), f.scopes...)
		scope = strings.Join(scopes, " ")
	}
	return tokenkeeper.Grant{
		ConnectionID: id,
		Provider:     f.provider.Name,
		Scopes:       scopes,
		Tokens: tokenkeeper.TokenSet{
			AccessToken:  tokenkeeper.NewSecret(tok.AccessToken),
			RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken),
			Expiry:       expiry,
			Scope:        scope,
		},
	}
}

// maxExpiresIn caps expires_in (a year, in seconds), so that an absurd value
// cannot overflow a time.Duration.
const maxExpiresIn = 366 * 24 * 60 * 60

// expiresIn returns the response's expires_in in seconds, or 0 if it has
// none. oauth2 fills Token.ExpiresIn only for JSON responses; a form-encoded
// response keeps it among the extras.
func expiresIn(tok *oauth2.Token) int64 {
	if tok.ExpiresIn > 0 {
		return tok.ExpiresIn
	}
	var n int64
	switch v := tok.Extra("expires_in").(type) { // a form value reads as int64 or float64
	case int64:
		n = v
	case float64:
		n = int64(min(v, maxExpiresIn))
	case string:
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	return max(n, 0)
}

// exchangeError classifies a failed exchange, keeping err in the chain.
func exchangeError(err error) *FlowError {
	err = oautherr.Redact(err) // its text would quote the response body
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Not reached, timed out, or an unreadable answer.
		return newFlowError(ReasonExchangeFailed, tokenkeeper.CodeUnavailable,
			"the provider could not be reached to finish connecting; start connecting again", err)
	}
	code := cleanProviderText(re.ErrorCode)
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	var fe *FlowError
	switch {
	case code == "invalid_client" || code == "unauthorized_client" || (code == "" && status == http.StatusUnauthorized):
		fe = newFlowError(ReasonExchangeFailed, tokenkeeper.CodeUnauthorized,
			"the provider refused this application's client credentials", err)
	case code == "server_error" || code == "temporarily_unavailable" ||
		(code == "" && (status >= 500 || status == http.StatusTooManyRequests || status < 400)):
		fe = newFlowError(ReasonExchangeFailed, tokenkeeper.CodeUnavailable,
			"the provider failed to finish connecting; start connecting again later", err)
	default:
		msg := "the provider refused the authorization code"
		if code != "" {
			msg += " (" + code + ")"
		}
		fe = newFlowError(ReasonExchangeFailed, tokenkeeper.CodeInvalid, msg+"; start connecting again", err)
	}
	fe.ProviderCode, fe.Description = code, cleanProviderText(re.ErrorDescription)
	return fe
}

// learnSubject asks the API who the grant of access is for. A failure
// logs a warning and returns "": the grant is good without a subject, and
// the connection is made all the same.
func (f *Flow) learnSubject(ctx context.Context, id tokenkeeper.ConnectionID, access tokenkeeper.Secret) string {
	subject, err := f.introspect(ctx, access)
	if err != nil {
		f.log.WarnContext(ctx, "connect: the subject is unknown; connecting without it", "connection", id, "error", err)
		return ""
	}
	return subject
}

// maxIntrospectBytes bounds the introspection response read.
const maxIntrospectBytes = 64 << 10

// introspect calls GET {APIURL}/v1/introspect and returns its subjectURN.
// Its errors never hold the token.
func (f *Flow) introspect(ctx context.Context, access tokenkeeper.Secret) (string, error) {
	endpoint := strings.TrimRight(f.provider.APIURL, "/") + "/v1/introspect"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("introspect: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+access.Reveal())
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("introspect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("introspect: GET %s: status %s", endpoint, resp.Status)
	}
	var body struct {
		SubjectURN string `json:"subjectURN"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxIntrospectBytes)).Decode(&body); err != nil {
		return "", fmt.Errorf("introspect: GET %s: decode: %w", endpoint, err)
	}
	switch s := body.SubjectURN; {
	case s == "":
		return "", fmt.Errorf("introspect: GET %s: no subjectURN", endpoint)
	case len(s) > maxSubjectLength || s != providertext.Clean(s) || strings.ContainsRune(s, utf8.RuneError):
		// An identifier is refused, not repaired: a changed subject would
		// name somebody else.
		return "", fmt.Errorf("introspect: GET %s: malformed subjectURN", endpoint)
	}
	return body.SubjectURN, nil
}
