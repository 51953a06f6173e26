package connect

import (
	"strings"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// Reason says why a connect flow failed, so that a page can explain it
// without parsing error text. Its string values are stable: they may be
// logged, counted and sent on the wire.
type Reason string

// The reasons a callback, or the opening of a connect link
// ([Flow.OpenLink]: the link reasons and ReasonInternal), fails.
// ReasonStateMissing, ReasonStateUnknown, ReasonWrongBrowser and
// ReasonLinkUnknown mean the request could not be tied to a flow (or link)
// that this Flow started (in this browser): its [FlowError] has no
// ConnectionID and no ReturnURL.
const (
	// ReasonStateMissing: the redirect carries no state (or more than one).
	// CodeInvalid.
	ReasonStateMissing Reason = "state_missing"
	// ReasonStateUnknown: the state was never issued, was already used, or
	// was pruned long after it expired: a replay or a forgery (RFC 6749
	// section 10.12). CodeInvalid.
	ReasonStateUnknown Reason = "state_unknown"
	// ReasonStateExpired: the state was issued by this Flow but its session
	// expired (Config.SessionTTL) before the user came back. CodeInvalid.
	// The ConnectionID and ReturnURL are filled in: they come from the
	// session, not from the request.
	ReasonStateExpired Reason = "state_expired"
	// ReasonWrongBrowser: the state names a flow that was begun with a
	// binding (BeginRequest.Binding), and the callback came with another
	// binding or none: it was not made by the browser that began the flow,
	// as when an attacker sends a victim to the callback with the code of
	// the attacker's own consent (RFC 6749 section 10.12). CodeForbidden.
	// The state is spent all the same. A session whose sealed verifier
	// cannot be opened at all (its key gone from the keyset, its ciphertext
	// altered) fails this way too: an AEAD cannot tell these apart.
	ReasonWrongBrowser Reason = "wrong_browser"

	// ReasonDenied: the provider answered error=access_denied (RFC 6749
	// section 4.1.2.1): the user, or the provider's policy, refused consent.
	// CodeForbidden.
	ReasonDenied Reason = "denied"
	// ReasonProviderError: the provider answered with another error code in
	// the redirect. CodeUnavailable for server_error and
	// temporarily_unavailable, CodeInvalid otherwise (the request, and so
	// the configuration, is wrong).
	ReasonProviderError Reason = "provider_error"
	// ReasonMissingCode: the redirect carries neither a code nor an error,
	// or repeats the code. CodeInvalid.
	ReasonMissingCode Reason = "missing_code"
	// ReasonExchangeFailed: the token endpoint did not exchange the code
	// (RFC 6749 section 4.1.3). The *oauth2.RetrieveError, if the provider
	// answered, is in the chain. CodeInvalid for invalid_grant and other
	// refusals of the request, CodeUnauthorized for invalid_client and
	// unauthorized_client (the client credentials are wrong),
	// CodeUnavailable when the provider failed or could not be reached.
	ReasonExchangeFailed Reason = "exchange_failed"
	// ReasonLinkUnknown: [Flow.OpenLink] was given a token that names no
	// link: never made, already opened, deleted long after it expired, or
	// not a link at all (a state). CodeNotFound: the link, a resource in
	// the URL, does not exist.
	ReasonLinkUnknown Reason = "link_unknown"
	// ReasonLinkExpired: the link was made by this Flow's store but opened
	// after it expired (LinkRequest.TTL). CodeInvalid, like
	// ReasonStateExpired. The ConnectionID and ReturnURL are filled in from
	// the stored link, so a page can offer to start again. The link is
	// spent.
	ReasonLinkExpired Reason = "link_expired"

	// ReasonInternal: tokenkeeper's own side failed: the session store, the
	// sealer, or the [Keeper] that saves the tokens. The cause's code is
	// kept (CodeUnavailable means retrying may help; anything else reads as
	// CodeInternal). A failure to read the session has no ConnectionID or
	// ReturnURL, since the browser could not be checked.
	ReasonInternal Reason = "internal"
)

// FlowError is the error [Flow.Callback] and [Flow.OpenLink] return for
// every failure. A page can switch on Reason, link back to ReturnURL when
// it is set, and show [tokenkeeper.ErrorMessage] of the error, which is
// always human text.
//
// ConnectionID and ReturnURL come from the stored session, never from the
// request, so they are set only once the state has been matched to a
// session this Flow created (and, for a flow begun with a binding, the
// callback to the browser that began it): a page may redirect to ReturnURL
// without becoming an open redirector.
//
// No field, and no text of the error, holds the code, the state, a link
// token, the PKCE verifier, the browser binding or a token. ProviderCode
// and Description come from the provider (through the user's browser for a
// redirect): they are cleaned of control characters and cut to a few
// hundred bytes, but are otherwise untrusted text, so escape them when
// rendering (html/template does).
//
// A FlowError is immutable once returned and safe for concurrent use.
type FlowError struct {
	Reason Reason
	// ConnectionID is the connection of the session; empty unless the state
	// matched one (and the browser matched the flow's binding).
	ConnectionID tokenkeeper.ConnectionID
	// ReturnURL is where the user wanted to go back to; empty unless the
	// state matched a session that had one.
	ReturnURL string
	// ProviderCode is the RFC 6749 error code the provider answered, in the
	// redirect (section 4.1.2.1) or from the token endpoint (section 5.2);
	// empty if none.
	ProviderCode string
	// Description is the provider's error_description, if it gave one.
	Description string
	// Err is a *tokenkeeper.Error whose Code classifies the failure and whose
	// Message is human text; its cause (an *oauth2.RetrieveError, a store
	// error) is further down the chain. It is never nil in a FlowError
	// returned by this package.
	Err error
}

// Error returns the message and its cause, for logs.
func (e *FlowError) Error() string {
	var b strings.Builder
	b.WriteString("connect")
	if e.ConnectionID != "" {
		b.WriteString(" " + string(e.ConnectionID))
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(string(e.Reason))
	}
	return b.String()
}

// Unwrap returns Err, so that [tokenkeeper.ErrorCode], [errors.Is] and
// [errors.As] see the code and the cause.
func (e *FlowError) Unwrap() error { return e.Err }

// newFlowError returns a FlowError for reason, with a *tokenkeeper.Error of
// code holding msg and wrapping cause (which may be nil).
func newFlowError(reason Reason, code tokenkeeper.Code, msg string, cause error) *FlowError {
	return &FlowError{Reason: reason, Err: &tokenkeeper.Error{Code: code, Message: msg, Err: cause}}
}

// forSession fills in what the session tells, once the state is verified.
func (e *FlowError) forSession(s *tokenkeeper.Session, returnURL string) *FlowError {
	e.ConnectionID, e.ReturnURL = s.ConnectionID, returnURL
	return e
}

// maxProviderText bounds ProviderCode and Description, in bytes.
const maxProviderText = 300

// cleanProviderText makes text from the provider safe to log and keep:
// valid UTF-8, no control characters, at most maxProviderText bytes.
func cleanProviderText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > maxProviderText {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
