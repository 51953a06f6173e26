package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Link lifetimes.
const (
	// DefaultLinkTTL is a link's lifetime when neither LinkRequest.TTL nor
	// Config.LinkTTL says otherwise.
	DefaultLinkTTL = 15 * time.Minute
	// MaxLinkTTL bounds a link's lifetime: a link is a bearer credential
	// for starting a flow, and lives in e-mails and chat messages.
	MaxLinkTTL = 7 * 24 * time.Hour
)

// LinkRequest asks for a connect link: what an integrator's backend makes
// for one end user, and sends that user's browser to.
type LinkRequest struct {
	// ConnectionID is the connection the flow will create or reconnect.
	// Required; see [tokenkeeper.ConnectionID.Validate].
	ConnectionID tokenkeeper.ConnectionID
	// ReturnURL is where the user goes when the flow ends, as in
	// [BeginRequest]; empty means nowhere in particular. It must be a path
	// on this host or lie under Config.AllowedReturnURLs.
	ReturnURL string
	// TTL is how long the link may wait to be opened. Zero means
	// Config.LinkTTL; at most [MaxLinkTTL].
	TTL time.Duration
}

// Link is a single-use connect link. Token is its only credential: put it
// in the URL the user opens (a path segment, say), and never log it.
type Link struct {
	// Token is 256 random bits, unpadded base64url (43 characters). Only
	// its domain-separated SHA-256 is stored.
	Token        tokenkeeper.Secret
	ConnectionID tokenkeeper.ConnectionID
	ReturnURL    string
	ExpiresAt    time.Time
}

// linkDomain prefixes a link token before hashing, so that a link's hash
// never equals a state's (which is the plain SHA-256 of the state): a link
// token presented as a state, or a state presented as a link, names no
// session and spends nothing.
const linkDomain = "tokenkeeper/link\x00"

// hashLink returns the stored hash of a link token.
func hashLink(token string) []byte {
	sum := sha256.Sum256([]byte(linkDomain + token))
	return sum[:]
}

// NewLink makes a single-use link that starts a connect flow for
// req.ConnectionID when opened ([Flow.OpenLink]). The link is stored as a
// [tokenkeeper.Session] with no verifier, keyed by the token's
// domain-separated hash, until it is opened or expires (expired links are
// deleted with expired flows, an hour after they expire).
//
// Errors: [tokenkeeper.CodeInvalid] for a bad connection id, return URL
// (the rules of [Flow.Begin]) or TTL (negative, or above [MaxLinkTTL]);
// the Store's error (often CodeUnavailable) if the link cannot be stored.
func (f *Flow) NewLink(ctx context.Context, req LinkRequest) (*Link, error) {
	if err := req.ConnectionID.Validate(); err != nil {
		return nil, err
	}
	if err := f.checkReturnURL(req.ReturnURL); err != nil {
		return nil, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = f.linkTTL
	}
	if ttl < 0 || ttl > MaxLinkTTL {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "link TTL %s is not between 0 and %s", req.TTL, MaxLinkTTL)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	token := base64.RawURLEncoding.EncodeToString(b)
	now := f.now().UTC().Truncate(time.Microsecond)
	s := &tokenkeeper.Session{
		StateHash:    hashLink(token),
		ConnectionID: req.ConnectionID,
		ReturnURL:    req.ReturnURL,
		CreatedAt:    now,
		ExpiresAt:    now.Add(ttl),
	}
	if err := f.store.CreateSession(ctx, s); err != nil {
		return nil, fmt.Errorf("new connect link for %s: store: %w", req.ConnectionID, err)
	}
	f.maybePrune(ctx, now)
	f.log.InfoContext(ctx, "connect: link made", "connection", req.ConnectionID, "expires_at", s.ExpiresAt)
	return &Link{Token: tokenkeeper.NewSecret(token), ConnectionID: s.ConnectionID, ReturnURL: s.ReturnURL, ExpiresAt: s.ExpiresAt}, nil
}

// OpenLink spends the link whose token is given and begins its flow
// ([Flow.Begin]) bound to binding, the value the web layer keeps in the
// opening browser (see BeginRequest.Binding; empty binds nothing). It
// returns the provider's authorisation URL to redirect the browser to.
//
// A link works once: the link is taken from the store in one atomic step,
// so of concurrent opens exactly one proceeds. If the flow cannot be begun
// after that (the store fails), the link is put back so that the user can
// try again.
//
// Every error is a *[FlowError]: [ReasonLinkUnknown] (CodeNotFound) for a
// token that names no link, [ReasonLinkExpired] (CodeInvalid, with the
// link's ConnectionID and ReturnURL) for one opened too late, and
// [ReasonInternal] (the cause's code) if the store fails.
func (f *Flow) OpenLink(ctx context.Context, token string, binding string) (authURL string, err error) {
	unknown := newFlowError(ReasonLinkUnknown, tokenkeeper.CodeNotFound,
		"this connect link is unknown or was already used; ask for a new one", nil)
	// NewLink's tokens are 32 bytes in unpadded base64url: anything else
	// cannot match, and need not cost a query.
	if b, err := base64.RawURLEncoding.Strict().DecodeString(token); err != nil || len(b) != 32 {
		return "", unknown
	}
	s, err := f.store.TakeSession(ctx, hashLink(token))
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		return "", unknown
	case err != nil:
		return "", newFlowError(ReasonInternal, tokenkeeper.ErrorCode(err), "the connect link could not be read; try again", err)
	case !s.Verifier.IsZero():
		// A flow's session under a link's hash: impossible short of a
		// SHA-256 collision, and never to be begun from.
		f.log.ErrorContext(ctx, "connect: a link token named a flow's session", "connection", s.ConnectionID)
		return "", unknown
	}
	returnURL := s.ReturnURL
	if err := f.checkReturnURL(returnURL); err != nil {
		f.log.WarnContext(ctx, "connect: dropped a return URL that is no longer allowed", "connection", s.ConnectionID)
		returnURL = ""
	}
	if !f.now().Before(s.ExpiresAt) {
		return "", newFlowError(ReasonLinkExpired, tokenkeeper.CodeInvalid,
			"this connect link has expired; ask for a new one", nil).forSession(s, returnURL)
	}
	authURL, err = f.Begin(ctx, BeginRequest{ConnectionID: s.ConnectionID, ReturnURL: returnURL, Binding: binding})
	if err != nil {
		// Nothing was begun that anyone can finish: the link is not spent.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := f.store.CreateSession(rctx, s); rerr != nil {
			f.log.WarnContext(ctx, "connect: could not put back a link whose flow failed to begin; it is spent", "connection", s.ConnectionID, "error", rerr)
		}
		return "", newFlowError(ReasonInternal, tokenkeeper.ErrorCode(err),
			"the connect flow could not be started; try again", err).forSession(s, returnURL)
	}
	f.log.InfoContext(ctx, "connect: link opened", "connection", s.ConnectionID)
	return authURL, nil
}
