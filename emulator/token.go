package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

// handleToken serves POST /oauth/token (RFC 6749 §4.1.3 and §6).
func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request) {
	form, oerr := readForm(w, r)
	if oerr != nil {
		e.countAndFail(w, EndpointToken, oerr)
		return
	}
	grant := form.Get("grant_type")
	counterKey := grant
	if grant != "authorization_code" && grant != "refresh_token" {
		counterKey = EndpointToken
	}
	client, oerr := e.authenticateClient(r, form)
	if oerr != nil {
		e.countAndFail(w, counterKey, oerr)
		return
	}
	switch grant {
	case "authorization_code":
		e.codeGrant(w, client, form)
	case "refresh_token":
		e.refreshGrant(w, client, form)
	case "":
		e.countAndFail(w, counterKey, errInvalidRequest("grant_type is required"))
	default:
		e.countAndFail(w, counterKey, &oauthError{http.StatusBadRequest, "unsupported_grant_type",
			"grant type is not supported; use authorization_code or refresh_token"})
	}
}

func (e *Emulator) countAndFail(w http.ResponseWriter, counter string, oerr *oauthError) {
	e.mu.Lock()
	e.ledger.count(counter, oerr.code)
	e.mu.Unlock()
	writeOAuthError(w, oerr)
}

// authenticateClient checks client_secret_basic, or client_secret_post where allowed
// (RFC 6749 §2.3.1). Using both at once is an error (§2.3).
func (e *Emulator) authenticateClient(r *http.Request, form url.Values) (*Client, *oauthError) {
	id, secret, basic, err := parseBasic(r.Header.Get("Authorization"))
	if err != nil {
		return nil, errInvalidClient(err.Error())
	}
	_, bodySecret := form["client_secret"]
	if basic && bodySecret {
		return nil, errInvalidRequest("client credentials were sent both in the Authorization header and in the body")
	}
	if basic {
		if bodyID := form.Get("client_id"); bodyID != "" && bodyID != id {
			return nil, errInvalidRequest("client_id in the body does not match the authenticated client")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if !bodySecret {
			return nil, errInvalidClient("client authentication is required (HTTP Basic)")
		}
		if !e.cfg.AllowClientSecretPost {
			e.mu.Lock()
			e.ledger.violate(RuleClientAuthMethod, "", e.clock.Now(),
				"client "+strconvQuote(id)+" sent its credentials in the body; Pleo requires client_secret_basic")
			e.mu.Unlock()
			return nil, errInvalidClient("client credentials in the request body are not supported; use HTTP Basic (client_secret_basic)")
		}
	}
	e.mu.Lock()
	c := e.clients[id]
	e.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return nil, errInvalidClient("client authentication failed")
	}
	return c, nil
}

func (e *Emulator) codeGrant(w http.ResponseWriter, c *Client, form url.Values) {
	code, redirectURI, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	switch {
	case code == "":
		e.countAndFail(w, "authorization_code", errInvalidRequest("code is required"))
		return
	case redirectURI == "":
		e.countAndFail(w, "authorization_code", errInvalidRequest("redirect_uri is required"))
		return
	case verifier == "":
		e.mu.Lock()
		e.ledger.violate(RulePKCEMissing, e.authOfCode(code), e.clock.Now(), "code exchange without code_verifier")
		e.mu.Unlock()
		e.countAndFail(w, "authorization_code", errInvalidRequest("code_verifier is required (PKCE, RFC 7636 §4.5)"))
		return
	case !validPKCEString(verifier):
		e.countAndFail(w, "authorization_code", errInvalidRequest("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)"))
		return
	}
	d := e.faults.pick(EndpointToken)
	e.mu.Lock()
	auth := e.authOfCode(code)
	e.ledger.checkRetry("code:"+code, auth, e.clock.Now())
	e.mu.Unlock()
	if e.applyBefore(w, d, "authorization_code", "code:"+code, auth, true) {
		return
	}

	e.mu.Lock()
	now := e.clock.Now()
	resp, oerr := e.exchangeLocked(c, code, redirectURI, verifier, now)
	if oerr != nil {
		e.ledger.count("authorization_code", oerr.code)
	} else {
		e.ledger.count("authorization_code", "ok")
	}
	e.mu.Unlock()
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	if e.applyAfter(w, d, "authorization_code", true) {
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Emulator) authOfCode(code string) string {
	if ac := e.st.codes[code]; ac != nil {
		return ac.auth.id
	}
	return ""
}

func (e *Emulator) exchangeLocked(c *Client, code, redirectURI, verifier string, now time.Time) (*tokenResponse, *oauthError) {
	ac := e.st.codes[code]
	switch {
	case ac == nil || ac.clientID != c.ID:
		return nil, errInvalidGrant("the authorization code is unknown")
	case ac.used:
		// RFC 6749 §4.1.2: a replayed code should revoke every token issued from it.
		e.revokeLocked(ac.auth, RevokedAuthorizationCodeUsed, now)
		return nil, errInvalidGrant("the authorization code was already used; its tokens are revoked")
	case ac.auth.state == AuthorisationRevoked:
		// Revoked before the exchange (by the user, or with the installation): issuing
		// tokens now would bring the authorisation back to life.
		return nil, errInvalidGrant("the authorisation has been revoked")
	case !now.Before(ac.expiresAt):
		return nil, errInvalidGrant("the authorization code has expired")
	case ac.redirectURI != redirectURI:
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	case !pkceMatches(verifier, ac.challenge):
		return nil, errInvalidGrant("code_verifier does not match the code_challenge")
	}
	ac.used = true
	at, rt := e.issueLocked(ac.auth, nil, now)
	return e.responseFor(at, rt), nil
}

func (e *Emulator) responseFor(at, rt *token) *tokenResponse {
	return &tokenResponse{
		AccessToken: at.value, RefreshToken: rt.value, TokenType: "Bearer",
		ExpiresIn: int64(e.cfg.AccessTokenTTL / time.Second), Scope: strings.Join(at.scopes, " "),
	}
}

func (e *Emulator) refreshGrant(w http.ResponseWriter, c *Client, form url.Values) {
	presented := form.Get("refresh_token")
	if presented == "" {
		e.countAndFail(w, "refresh_token", errInvalidRequest("refresh_token is required"))
		return
	}
	var requested []string
	if s, ok := form["scope"]; ok {
		requested = scopeList(s[0])
	}

	// Mark the refresh in flight before any latency, so that two requests that overlap on
	// the wire are seen to overlap here.
	e.mu.Lock()
	now := e.clock.Now()
	var a *authorisation
	if t := e.st.tokens[presented]; t != nil && t.kind == refreshToken && t.auth.clientID == c.ID {
		a = t.auth
	}
	authID, retryKey := "", ""
	if a != nil {
		authID, retryKey = a.id, "refresh:"+a.id
		e.ledger.checkRetry(retryKey, authID, now)
		if a.inflight > 0 {
			e.ledger.violate(RuleConcurrentRefresh, a.id, now, "a refresh started while another refresh of this authorisation was in flight")
		}
		a.inflight++
	}
	e.mu.Unlock()
	if a != nil {
		defer func() {
			e.mu.Lock()
			a.inflight--
			e.mu.Unlock()
		}()
	}

	d := e.faults.pick(EndpointToken)
	if e.applyBefore(w, d, "refresh_token", retryKey, authID, true) {
		return
	}
	e.mu.Lock()
	resp, oerr := e.rotateLocked(c, presented, requested, e.clock.Now())
	if oerr != nil {
		e.ledger.count("refresh_token", oerr.code)
	} else {
		e.ledger.count("refresh_token", "ok")
	}
	e.mu.Unlock()
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	if e.applyAfter(w, d, "refresh_token", true) {
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// rotateLocked applies Pleo's refresh rules to one presented refresh token.
func (e *Emulator) rotateLocked(c *Client, presented string, requested []string, now time.Time) (*tokenResponse, *oauthError) {
	t := e.st.tokens[presented]
	if t == nil || t.kind != refreshToken || t.auth.clientID != c.ID {
		return nil, errInvalidGrant("the refresh token is unknown")
	}
	a := t.auth
	if a.state == AuthorisationRevoked {
		if a.deadNotified {
			e.ledger.violate(RuleRetryAfterInvalidGrant, a.id, now,
				"refresh of an authorisation that was already answered invalid_grant (revoked: "+a.revokedReason+")")
		}
		a.deadNotified = true
		return nil, errInvalidGrant("the authorisation has been revoked")
	}
	if t.status == tokenRotated {
		e.ledger.violate(RuleRefreshTokenReuse, a.id, now,
			"presented the refresh token of generation "+itoa(t.generation)+"; the current generation is "+itoa(a.refreshes))
		e.revokeLocked(a, RevokedRefreshTokenReuse, now)
		a.deadNotified = true
		return nil, errInvalidGrant("the refresh token was already used; every token of the authorisation is revoked")
	}
	if !now.Before(t.expiresAt) {
		e.ledger.violate(RuleExpiredRefreshToken, a.id, now,
			"presented a refresh token that expired "+now.Sub(t.expiresAt).Round(time.Second).String()+" ago")
		e.revokeLocked(a, RevokedExpiredRefreshToken, now)
		a.deadNotified = true
		return nil, errInvalidGrant("the refresh token has expired; every refresh token of the authorisation is revoked")
	}
	if requested != nil {
		if len(requested) == 0 {
			// As at /oauth/authorize: an empty scope would mint a token that can do nothing.
			return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "scope is empty"}
		}
		if missing, ok := subsetOf(requested, a.scopes); !ok {
			return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "scope " + strconvQuote(missing) + " exceeds the scope of the grant"}
		}
	}
	a.refreshes++
	at, rt := e.issueLocked(a, requested, now)
	return e.responseFor(at, rt), nil
}

// pkceMatches reports whether BASE64URL(SHA256(verifier)) == challenge (RFC 7636 §4.6).
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// validPKCEString reports whether s is 43 to 128 unreserved characters, the form of both
// a code_verifier and an S256 code_challenge (RFC 7636 §4.1, §4.2).
func validPKCEString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9',
			ch == '-', ch == '.', ch == '_', ch == '~':
		default:
			return false
		}
	}
	return true
}
