package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
)

// BeginRequest names the connection a flow is for and where the user goes
// afterwards.
type BeginRequest struct {
	// ConnectionID is the connection to create, or to reconnect if it
	// exists. Required; see [tokenkeeper.ConnectionID.Validate].
	ConnectionID tokenkeeper.ConnectionID
	// ReturnURL is where the callback's page should send the user when the
	// flow ends, well or badly. Empty means nowhere in particular. It must
	// be a path on this host or lie under Config.AllowedReturnURLs.
	ReturnURL string
	// Subject, if set, is passed to Pleo as urn_pleo_params_oauth_subject
	// (a subject URN such as "urn:pleo:company:<uuid>"), which seems to
	// preselect the company or organisation on the consent page. Empty
	// sends nothing.
	Subject string
	// Binding, if set, binds the flow to the browser that begins it (RFC
	// 6749 section 10.12, RFC 9700 section 4.7.1): only a callback whose
	// CallbackRequest.Binding is the same value can finish it. It should be
	// an unguessable value (at least 128 random bits) that the web layer
	// also keeps in the browser, in a cookie marked HttpOnly, Secure and
	// SameSite=Lax (Lax, not Strict: the provider's redirect back is a
	// cross-site top-level navigation, on which a Strict cookie is not
	// sent). It is never stored: only its SHA-256 enters the associated
	// data that seals the session's PKCE verifier.
	//
	// Empty means no binding: any callback that carries the state may
	// finish the flow. That is weaker, because an attacker can then send a
	// victim's browser to the callback with the state and code of a flow
	// the attacker began, and connect the victim's connection id to the
	// attacker's account; it is kept for callers that cannot set a cookie.
	Binding string
}

// pruneInterval is how often Begin deletes expired sessions, at most.
// pruneGrace keeps an expired session that long, so that a late callback is
// told "expired" rather than "unknown".
const (
	pruneInterval = time.Minute
	pruneGrace    = time.Hour
)

// maxSubjectLength bounds BeginRequest.Subject, in bytes.
const maxSubjectLength = 256

// Begin starts a flow (RFC 6749 section 4.1.1) and returns the provider's
// authorisation URL, to which the caller redirects the user's browser.
//
// It stores a session holding the SHA-256 of a new single-use state (32
// random bytes) and a new PKCE verifier (RFC 7636 section 4.1) sealed by
// Config.Sealer (bound to req.Binding, if set); the URL carries the state
// and the verifier's S256 challenge. The session expires after
// Config.SessionTTL.
//
// Begin also cleans up: at most once a minute per Flow, it deletes the
// sessions that expired more than an hour ago. A failure to do so is
// logged, not returned.
//
// Errors: [tokenkeeper.CodeInvalid] for a bad connection id, return URL or
// subject; the Store's or Sealer's error (often CodeUnavailable or
// CodeInternal) if the session cannot be stored.
func (f *Flow) Begin(ctx context.Context, req BeginRequest) (authURL string, err error) {
	if err := req.ConnectionID.Validate(); err != nil {
		return "", err
	}
	if err := f.checkReturnURL(req.ReturnURL); err != nil {
		return "", err
	}
	if len(req.Subject) > maxSubjectLength || hasControl(req.Subject) {
		return "", tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
			"subject must be at most %d bytes without control characters", maxSubjectLength)
	}

	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	state := base64.RawURLEncoding.EncodeToString(b)
	hash := hashState(state)
	verifier := oauth2.GenerateVerifier()
	sealed, err := f.sealer.Seal([]byte(verifier), verifierAD(hash, req.Binding))
	if err != nil {
		return "", fmt.Errorf("begin connect %s: seal verifier: %w", req.ConnectionID, err)
	}
	now := f.now().UTC().Truncate(time.Microsecond)
	s := &tokenkeeper.Session{
		StateHash:    hash,
		ConnectionID: req.ConnectionID,
		ReturnURL:    req.ReturnURL,
		Verifier:     sealed,
		CreatedAt:    now,
		ExpiresAt:    now.Add(f.ttl),
	}
	if err := f.store.CreateSession(ctx, s); err != nil {
		return "", fmt.Errorf("begin connect %s: store session: %w", req.ConnectionID, err)
	}
	f.maybePrune(ctx, now)

	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if req.Subject != "" {
		opts = append(opts, oauth2.SetAuthURLParam("urn_pleo_params_oauth_subject", req.Subject))
	}
	return f.oauthConfig().AuthCodeURL(state, opts...), nil
}

// hashState returns the SHA-256 of the state as sent.
func hashState(state string) []byte {
	sum := sha256.Sum256([]byte(state))
	return sum[:]
}

// maybePrune deletes long-expired sessions, if no Begin of this Flow did in
// the last pruneInterval.
func (f *Flow) maybePrune(ctx context.Context, now time.Time) {
	last := f.lastPruneNs.Load()
	if last != 0 && now.UnixNano()-last < int64(pruneInterval) && now.UnixNano() >= last {
		return
	}
	if !f.lastPruneNs.CompareAndSwap(last, now.UnixNano()) {
		return // another Begin prunes
	}
	n, err := f.store.DeleteExpiredSessions(ctx, now.Add(-pruneGrace))
	if err != nil {
		f.log.WarnContext(ctx, "connect: delete expired sessions", "error", err)
		return
	}
	if n > 0 {
		f.log.DebugContext(ctx, "connect: deleted expired sessions", "count", n)
	}
}
