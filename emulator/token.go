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
	RefreshToken string `json:"refresh_token,omitempty"`
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
		e.codeGrant(w, r, client, form)
	case "refresh_token":
		e.refreshGrant(w, r, client, form)
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
	e.unlock()
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
			e.unlock()
			return nil, errInvalidClient("client credentials in the request body are not supported; use HTTP Basic (client_secret_basic)")
		}
	}
	e.mu.Lock()
	c := e.clients[id]
	e.unlock()
	if c == nil || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return nil, errInvalidClient("client authentication failed")
	}
	return c, nil
}

func (e *Emulator) codeGrant(w http.ResponseWriter, r *http.Request, c *Client, form url.Values) {
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
		e.unlock()
		e.countAndFail(w, "authorization_code", errInvalidRequest("code_verifier is required (PKCE, RFC 7636 §4.5)"))
		return
	case !validPKCEString(verifier):
		e.countAndFail(w, "authorization_code", errInvalidRequest("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)"))
		return
	}
	d := e.faults.pick(EndpointToken, FaultOmitRefreshToken)
	e.mu.Lock()
	auth := e.authOfCode(code)
	e.ledger.checkRetry("code:"+code, auth, e.clock.Now())
	e.unlock()
	if e.applyBefore(w, d, "authorization_code", "code:"+code, auth, true) {
		return
	}

	e.mu.Lock()
	res := e.exchangeLocked(c, code, redirectURI, verifier, e.clock.Now())
	e.unlock()
	e.respond(w, r, d, "authorization_code", res)
}

func (e *Emulator) authOfCode(code string) string {
	if ac := e.st.codes[code]; ac != nil {
		return ac.auth.id
	}
	return ""
}

func (e *Emulator) exchangeLocked(c *Client, code, redirectURI, verifier string, now time.Time) grantResult {
	ac := e.st.codes[code]
	switch {
	case ac == nil || ac.clientID != c.ID:
		return failed(errInvalidGrant("the authorization code is unknown"))
	case ac.used:
		// RFC 6749 §4.1.2: a replayed code should revoke every token issued from it.
		e.ledger.violateFlagged(ac.exchangeLost, RuleAuthorizationCodeReuse, ac.auth.id, now,
			"presented an authorization code that was already exchanged")
		e.revokeLocked(ac.auth, RevokedAuthorizationCodeUsed, now)
		return grantResult{oerr: errInvalidGrant("the authorization code was already used; its tokens are revoked"), replayed: ac}
	case !now.Before(ac.expiresAt):
		return failed(errInvalidGrant("the authorization code has expired"))
	case ac.redirectURI != redirectURI:
		return failed(errInvalidGrant("redirect_uri does not match the authorization request"))
	case !pkceMatches(verifier, ac.challenge):
		return failed(errInvalidGrant("code_verifier does not match the code_challenge"))
	case ac.auth.state == AuthorisationRevoked:
		// Revoked between consent and exchange: the code must not revive it.
		return failed(errInvalidGrant("the authorisation has been revoked"))
	}
	if ac.forgedState {
		e.ledger.violate(RuleStateNotVerified, ac.auth.id, now,
			"exchanged a code whose redirect carried a state the client never sent (the wrong_state fault)")
	}
	ac.used = true
	at, rt := e.issueLocked(ac.auth, nil, now, false)
	return grantResult{resp: e.responseFor(at, rt), code: ac}
}

// responseFor is the success body; rt nil means the refresh token is not rotated and so
// not sent (the omit_refresh_token fault).
func (e *Emulator) responseFor(at, rt *token) *tokenResponse {
	resp := &tokenResponse{
		AccessToken: at.value, TokenType: "Bearer",
		ExpiresIn: int64(e.cfg.AccessTokenTTL / time.Second), Scope: strings.Join(at.scopes, " "),
	}
	if rt != nil {
		resp.RefreshToken = rt.value
	}
	return resp
}

// grantResult is what one token request did. The bookkeeping that depends on whether the
// client received the answer (see settle) happens after the response is written.
type grantResult struct {
	resp       *tokenResponse
	oerr       *oauthError
	superseded []*token       // tokens this request rotated out
	dead       *authorisation // answered invalid_grant because it is revoked
	code       *authCode      // the code this request exchanged
	replayed   *authCode      // the code this request presented again
	inflight   *authorisation // whose in-flight mark settle releases (a refresh)
}

func failed(oerr *oauthError) grantResult { return grantResult{oerr: oerr} }

func (g grantResult) outcome() string {
	if g.oerr != nil {
		return g.oerr.code
	}
	return "ok"
}

// respond answers a token request, or loses the answer if d is an after-commit fault,
// then settles what depends on delivery.
func (e *Emulator) respond(w http.ResponseWriter, r *http.Request, d decision, counter string, g grantResult) {
	if d.afterCommit() {
		e.settle(counter, g, false)
		e.applyAfter(w, d, counter, true) // a drop does not return
		return
	}
	var err error
	if g.oerr != nil {
		err = writeOAuthError(w, g.oerr)
	} else {
		err = writeJSON(w, http.StatusOK, g.resp)
	}
	// A client that gave up (a timeout while the request waited) has closed its
	// connection, which cancels the request's context.
	e.settle(counter, g, err == nil && r.Context().Err() == nil)
}

// settle records whether the client could have learnt what a token request did. A
// client that never received a rotation cannot know its tokens were superseded, and one
// that never received invalid_grant cannot know the authorisation is dead: the
// violations that follow are flagged lost_response, or not recorded at all.
//
// The outcome is counted and the in-flight mark released here, under the same lock: a
// request counted in the report is done with, so a test (or a client that gave up) that
// waits for the count and then retries is judged on the settled state.
func (e *Emulator) settle(counter string, g grantResult, delivered bool) {
	e.mu.Lock()
	defer e.unlock()
	e.ledger.count(counter, g.outcome())
	if g.inflight != nil {
		g.inflight.inflight--
	}
	if !delivered {
		for _, t := range g.superseded {
			t.rotationLost = true
		}
		if g.code != nil {
			g.code.exchangeLost = true
		}
		return
	}
	if g.dead != nil {
		g.dead.deadNotified = true
	}
	if g.replayed != nil {
		// The client now knows the code is spent: a further replay is its own doing.
		g.replayed.exchangeLost = false
	}
}

func (e *Emulator) refreshGrant(w http.ResponseWriter, r *http.Request, c *Client, form url.Values) {
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
	e.unlock()
	// settle releases the mark once the grant ran; this defer does on every other way
	// out (a before-processing fault or drop, or Close cutting a latency short).
	release := a
	if a != nil {
		defer func() {
			if release != nil {
				e.mu.Lock()
				release.inflight--
				e.unlock()
			}
		}()
	}

	d := e.faults.pick(EndpointToken)
	if e.applyBefore(w, d, "refresh_token", retryKey, authID, true) {
		return
	}
	e.mu.Lock()
	res := e.rotateLocked(c, presented, requested, e.clock.Now(), d.kind == FaultOmitRefreshToken)
	if d.kind == FaultOmitRefreshToken && res.oerr == nil {
		e.ledger.count("refresh_token", "fault:"+FaultOmitRefreshToken)
	}
	e.unlock()
	res.inflight, release = a, nil
	e.respond(w, r, d, "refresh_token", res)
}

// rotateLocked applies Pleo's refresh rules to one presented refresh token. keepRT
// answers with a new access token only, leaving the refresh token as it is.
func (e *Emulator) rotateLocked(c *Client, presented string, requested []string, now time.Time, keepRT bool) grantResult {
	t := e.st.tokens[presented]
	if t == nil || t.kind != refreshToken || t.auth.clientID != c.ID {
		return failed(errInvalidGrant("the refresh token is unknown"))
	}
	a := t.auth
	if a.state == AuthorisationRevoked {
		if a.deadNotified {
			e.ledger.violate(RuleRetryAfterInvalidGrant, a.id, now,
				"refresh of an authorisation that was already answered invalid_grant (revoked: "+a.revokedReason+")")
		}
		return grantResult{oerr: errInvalidGrant("the authorisation has been revoked"), dead: a}
	}
	if t.status == tokenRotated {
		e.ledger.violateFlagged(t.rotationLost, RuleRefreshTokenReuse, a.id, now,
			"presented the refresh token of generation "+itoa(t.generation)+"; the current generation is "+itoa(a.refreshes))
		e.revokeLocked(a, RevokedRefreshTokenReuse, now)
		return grantResult{oerr: errInvalidGrant("the refresh token was already used; every token of the authorisation is revoked"), dead: a}
	}
	if !now.Before(t.expiresAt) {
		e.ledger.violate(RuleExpiredRefreshToken, a.id, now,
			"presented a refresh token that expired "+now.Sub(t.expiresAt).Round(time.Second).String()+" ago")
		e.revokeLocked(a, RevokedExpiredRefreshToken, now)
		return grantResult{oerr: errInvalidGrant("the refresh token has expired; every refresh token of the authorisation is revoked"), dead: a}
	}
	if requested != nil {
		if len(requested) == 0 {
			// As at /oauth/authorize: a blank scope would mint a token that can do nothing.
			return failed(&oauthError{http.StatusBadRequest, "invalid_scope", "scope is blank"})
		}
		if missing, ok := subsetOf(requested, a.scopes); !ok {
			return failed(&oauthError{http.StatusBadRequest, "invalid_scope", "scope " + strconvQuote(missing) + " exceeds the scope of the grant"})
		}
	}
	superseded := []*token{a.access, a.refresh}
	if keepRT {
		superseded = superseded[:1]
	}
	a.refreshes++
	at, rt := e.issueLocked(a, requested, now, keepRT)
	if keepRT {
		rt = nil
	}
	return grantResult{resp: e.responseFor(at, rt), superseded: superseded}
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
