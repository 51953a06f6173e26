package emulator

import (
	"net/http"
	"strings"
)

// introspection is the RFC 7662 §2.2 response, with Pleo's subject claim.
type introspection struct {
	Active     bool   `json:"active"`
	Sub        string `json:"sub,omitempty"`
	Exp        int64  `json:"exp,omitempty"`
	Iat        int64  `json:"iat,omitempty"`
	ClientID   string `json:"client_id,omitempty"`
	Aud        string `json:"aud,omitempty"`
	Iss        string `json:"iss,omitempty"`
	Jti        string `json:"jti,omitempty"`
	Scope      string `json:"scope,omitempty"`
	TokenType  string `json:"token_type,omitempty"`
	SubjectURN string `json:"urn:pleo:params:oauth:subject_urn,omitempty"`
}

// handleIntrospect serves POST /oauth/token/introspect. Only the client that obtained a
// token may introspect it; to any other client the token is simply inactive (RFC 7662 §4).
func (e *Emulator) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	form, oerr := readForm(w, r)
	var c *Client
	if oerr == nil {
		c, oerr = e.authenticateClient(r, form)
	}
	if oerr == nil && form.Get("token") == "" {
		oerr = errInvalidRequest("token is required")
	}
	if oerr != nil {
		e.countAndFail(w, EndpointIntrospect, oerr)
		return
	}
	// A Retry-After applies to the request it answered: this client, this token.
	retryKey := "introspect:" + c.ID + " " + form.Get("token")
	e.mu.Lock()
	e.ledger.checkRetry(retryKey, "", e.clock.Now())
	e.unlock()
	d := e.faults.pick(EndpointIntrospect)
	if e.applyBefore(w, d, EndpointIntrospect, retryKey, "", true) {
		return
	}
	e.mu.Lock()
	now := e.clock.Now()
	out := introspection{}
	if t := e.st.tokens[form.Get("token")]; t != nil && t.auth.clientID == c.ID &&
		t.status == tokenCurrent && t.auth.state == AuthorisationActive && now.Before(t.expiresAt) {
		typ := "access_token"
		if t.kind == refreshToken {
			typ = "refresh_token"
		}
		out = introspection{
			Active: true, Sub: t.auth.company.URN(), Exp: t.expiresAt.Unix(), Iat: t.issuedAt.Unix(),
			ClientID: c.ID, Aud: c.ID, Iss: "pleo-emulator", Jti: t.jti,
			Scope: strings.Join(t.scopes, " "), TokenType: typ, SubjectURN: t.auth.company.URN(),
		}
	}
	e.ledger.count(EndpointIntrospect, "ok")
	e.unlock()
	if e.applyAfter(w, d, EndpointIntrospect, true) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}
