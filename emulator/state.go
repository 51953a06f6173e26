package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"time"
)

// Authorisation states, as reported in the ledger.
const (
	AuthorisationPending = "pending" // consent given, code not yet exchanged
	AuthorisationActive  = "active"
	AuthorisationRevoked = "revoked"
)

// Reasons an authorisation was revoked, as reported in the ledger.
const (
	RevokedRefreshTokenReuse     = "refresh_token_reuse"
	RevokedExpiredRefreshToken   = "expired_refresh_token"
	RevokedAuthorizationCodeUsed = "authorization_code_reuse"
	RevokedByUser                = "revoked_by_user"      // POST /_emulator/authorisations/{id}/revoke
	RevokedInstallationDeleted   = "installation_deleted" // DELETE /v1/installations/me
)

type tokenKind uint8

const (
	accessToken tokenKind = iota + 1
	refreshToken
)

type tokenStatus uint8

const (
	tokenCurrent tokenStatus = iota + 1
	tokenRotated             // superseded by a refresh: presenting it again is reuse
	tokenRevoked             // killed with its authorisation
)

// token is one issued access or refresh token. Tokens are keyed by value in state.tokens
// and never deleted while the emulator runs, so a rotated-out token is always recognised.
type token struct {
	value     string
	kind      tokenKind
	auth      *authorisation
	jti       string
	scopes    []string
	issuedAt  time.Time
	expiresAt time.Time
	status    tokenStatus
	// rotationLost is set when the response of the refresh that rotated this token out
	// never reached the client, so the client cannot know the token is dead.
	rotationLost bool
	// generation is the refresh count of the authorisation when the token was issued.
	generation int
}

// authorisation is one token family: one completed consent of one company to one client.
type authorisation struct {
	id            string
	clientID      string
	company       *company
	scopes        []string
	state         string
	revokedReason string
	createdAt     time.Time
	revokedAt     time.Time
	refreshes     int
	access        *token // current
	refresh       *token // current
	code          *authCode
	// deadNotified is set once the client has been told invalid_grant for this
	// authorisation; a refresh after that is a retry_after_invalid_grant violation.
	deadNotified bool
	// inflight counts refresh requests of this authorisation being processed, for
	// concurrent_refresh detection.
	inflight int
	// installationStatus is what GET /v1/installations/me reports.
	installationStatus string
}

type authCode struct {
	value       string
	clientID    string
	redirectURI string
	challenge   string
	auth        *authorisation
	expiresAt   time.Time
	used        bool
	// exchangeLost is set when the response of the exchange never reached the client.
	exchangeLost bool
	// forgedState is set when the redirect that carried this code had a state the client
	// never sent (the wrong_state fault): a client that checks state never exchanges it.
	forgedState bool
}

// consentRequest is an authorise request waiting for the user's decision on the consent
// page. It is single-use.
type consentRequest struct {
	id          string
	client      *Client
	redirectURI string
	state       string
	challenge   string
	scopes      []string
	expiresAt   time.Time
	// fault is the variant fault drawn for this request (wrong_state, missing_code), or "".
	fault string
}

type state struct {
	tokens   map[string]*token
	codes    map[string]*authCode
	auths    map[string]*authorisation
	order    []*authorisation // creation order, for the report
	consents map[string]*consentRequest
	jobs     map[string][]*exportJob // company id → jobs created at run time and seeded
}

func newState() *state {
	return &state{
		tokens:   map[string]*token{},
		codes:    map[string]*authCode{},
		auths:    map[string]*authorisation{},
		consents: map[string]*consentRequest{},
		jobs:     seedExportJobs(),
	}
}

// randomString returns n random bytes, base64url-encoded without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newUUID returns a random version-4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (e *Emulator) newAuthorisationLocked(c *Client, co *company, scopes []string) *authorisation {
	a := &authorisation{
		id:                 "auth_" + randomString(12),
		clientID:           c.ID,
		company:            co,
		scopes:             scopes,
		state:              AuthorisationPending,
		createdAt:          e.clock.Now(),
		installationStatus: "AUTHORIZED",
	}
	e.st.auths[a.id] = a
	e.st.order = append(e.st.order, a)
	return a
}

// issueLocked mints a new access and refresh token for a, marks the previous pair rotated
// and makes the new pair current. scopes narrows the access token (RFC 6749 §6); nil means
// the authorisation's scopes.
//
// keepRT rotates the access token only: the current refresh token stays current and is
// returned as rt.
func (e *Emulator) issueLocked(a *authorisation, scopes []string, now time.Time, keepRT bool) (at, rt *token) {
	if a.access != nil && a.access.status == tokenCurrent {
		a.access.status = tokenRotated
	}
	if keepRT && a.refresh != nil {
		at = e.mintLocked(a, accessToken, orDefault(scopes, a.scopes), now, now.Add(e.cfg.AccessTokenTTL))
		a.access = at
		return at, a.refresh
	}
	if a.refresh != nil && a.refresh.status == tokenCurrent {
		a.refresh.status = tokenRotated
	}
	if scopes == nil {
		scopes = a.scopes
	}
	rtTTL := e.cfg.RefreshTokenTTL
	if j := e.cfg.RefreshTokenJitter; j > 0 {
		rtTTL += time.Duration(e.rng.Int64N(int64(j)))
	}
	at = e.mintLocked(a, accessToken, scopes, now, now.Add(e.cfg.AccessTokenTTL))
	rt = e.mintLocked(a, refreshToken, a.scopes, now, now.Add(rtTTL))
	a.access, a.refresh = at, rt
	a.state = AuthorisationActive
	return at, rt
}

func orDefault(scopes, def []string) []string {
	if scopes == nil {
		return def
	}
	return scopes
}

func (e *Emulator) mintLocked(a *authorisation, kind tokenKind, scopes []string, now, exp time.Time) *token {
	t := &token{
		kind: kind, auth: a, jti: randomString(12), scopes: scopes,
		issuedAt: now, expiresAt: exp, status: tokenCurrent, generation: a.refreshes,
	}
	if e.cfg.JWTTokens {
		t.value = e.jwtShaped(t)
	} else {
		prefix := "pat_"
		if kind == refreshToken {
			prefix = "prt_"
		}
		t.value = prefix + randomString(32)
	}
	e.st.tokens[t.value] = t
	return t
}

// jwtShaped returns a token that looks like a JWT, but whose exp claim is an hour later
// than the real expiry: a client that parses it instead of trusting expires_in will use
// it after it expired, and the ledger records stale_access_token. The signature is random
// bytes; nothing may verify it.
func (e *Emulator) jwtShaped(t *token) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"emulator"}`))
	typ := "access"
	if t.kind == refreshToken {
		typ = "refresh"
	}
	claims, _ := json.Marshal(map[string]any{
		"iss": "pleo-emulator", "sub": t.auth.company.URN(), "aud": t.auth.clientID,
		"iat": t.issuedAt.Unix(), "exp": t.expiresAt.Add(time.Hour).Unix(), "jti": t.jti,
		"typ": typ, "scope": strings.Join(t.scopes, " "),
	})
	return hdr + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + randomString(64)
}

// revokeLocked kills every token of a and records why. Revoking twice keeps the first
// reason.
func (e *Emulator) revokeLocked(a *authorisation, reason string, now time.Time) {
	if a.state == AuthorisationRevoked {
		return
	}
	a.state = AuthorisationRevoked
	a.revokedReason = reason
	a.revokedAt = now
	a.installationStatus = "INACTIVE"
	for _, t := range []*token{a.access, a.refresh} {
		if t != nil && t.status == tokenCurrent {
			t.status = tokenRevoked
		}
	}
	e.ledger.logLater(slog.LevelInfo, "authorisation revoked", "authorisation", a.id, "reason", reason)
}
