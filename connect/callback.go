package connect

import (
	"context"
	"encoding/base64"
	"net/url"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// CallbackRequest is the redirect back to Config.RedirectURL.
type CallbackRequest struct {
	// Query is the redirect's query (RFC 6749 section 4.1.2). nil is
	// treated as empty.
	Query url.Values
	// Binding is the value the browser presented for the flow's binding
	// (see BeginRequest.Binding), typically read from the cookie the web
	// layer set when the flow began; empty if it presented none. A flow
	// begun with a binding fails with [ReasonWrongBrowser] unless Binding
	// is the same value. A flow begun without one ignores it.
	Binding string
}

// Result is what a successful flow produced.
type Result struct {
	// Connection is the connection as the Keeper stored it, with the
	// subject set if it could be learned (empty otherwise).
	Connection *tokenkeeper.Connection
	// ReturnURL is the BeginRequest's ReturnURL, checked again against the
	// Flow's rules; empty if there was none.
	ReturnURL string
}

// ExchangeTimeout bounds the work Callback does after it has taken the
// session: the code exchange, introspection, and saving the grant. That
// work runs on a context detached from the caller's, because a code, once
// sent, is spent: a user who closes the tab must not cost the tokens it
// buys.
const ExchangeTimeout = 30 * time.Second

// Callback finishes a flow from the redirect to Config.RedirectURL (RFC
// 6749 section 4.1.2).
//
// It verifies the state before anything else (RFC 6749 section 10.12): the
// state must be present once, name a session of this Flow's Store that has
// not been used (the session is taken, so each state works once, even
// against concurrent callbacks) and, if the flow was begun with a binding,
// come with the same req.Binding (the browser that began the flow); then
// the session must not have expired. Only then does it read error or code.
// A redirect with an error ends the flow; one with neither code nor error
// is a failed flow. The code is exchanged with its PKCE verifier (RFC 7636
// section 4.5) and client_secret_basic; the access token's expiry is
// counted from the moment the request was sent. The granted scopes are the
// response's scope, or the requested ones if it has none (RFC 6749 section
// 5.1).
//
// Then Callback asks GET {Provider.APIURL}/v1/introspect, with the new
// access token, who the grant is for, and hands the tokens and that
// subject together to Keeper.Connect, which stores them in one write: two
// flows finishing at once for one connection leave one flow's tokens with
// that flow's subject, never one company's tokens under another's subject.
// If introspection fails the connection is still made, without a subject:
// the failure is logged and the result has an empty subject.
//
// Every error is a *[FlowError]; see [Reason] for the causes and their
// codes.
func (f *Flow) Callback(ctx context.Context, req CallbackRequest) (*Result, error) {
	query := req.Query
	s, ferr := f.takeSession(ctx, query)
	if ferr != nil {
		return nil, ferr
	}
	// The browser check comes before anything that names the session: a
	// page must not send another browser to the flow's return URL.
	verifier, ferr := f.openVerifier(ctx, s, req.Binding)
	if ferr != nil {
		return nil, ferr
	}
	returnURL := s.ReturnURL
	if err := f.checkReturnURL(returnURL); err != nil {
		// Allowed when the flow began, not any more (the configuration
		// changed): the page must not redirect there.
		f.log.WarnContext(ctx, "connect: dropped a return URL that is no longer allowed", "connection", s.ConnectionID)
		returnURL = ""
	}
	if !f.now().Before(s.ExpiresAt) {
		return nil, newFlowError(ReasonStateExpired, tokenkeeper.CodeInvalid,
			"the connect session expired; start connecting again", nil).forSession(s, returnURL)
	}
	if ferr := checkRedirect(query); ferr != nil {
		return nil, ferr.forSession(s, returnURL)
	}

	// From here on, a sent code is spent: finish on a detached context.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ExchangeTimeout)
	defer cancel()
	grant, ferr := f.exchange(dctx, s.ConnectionID, query.Get("code"), string(verifier))
	if ferr != nil {
		return nil, ferr.forSession(s, returnURL)
	}
	// The subject is learned before the grant is stored, so that the
	// keeper writes it with the tokens it belongs to.
	grant.Subject = f.learnSubject(dctx, s.ConnectionID, grant.Tokens.AccessToken)
	conn, err := f.keeper.Connect(dctx, grant)
	if err == nil && conn == nil {
		err = tokenkeeper.Errorf(tokenkeeper.CodeInternal, "keeper: Connect returned no connection and no error")
	}
	if err != nil {
		f.log.ErrorContext(ctx, "connect: the provider issued tokens but they could not be saved; the user must connect again",
			"connection", s.ConnectionID, "error", err)
		return nil, newFlowError(ReasonInternal, tokenkeeper.ErrorCode(err),
			"the connection could not be saved", err).forSession(s, returnURL)
	}
	c := *conn
	f.log.InfoContext(ctx, "connect: connected", "connection", c.ID, "provider", c.Provider,
		"generation", c.Generation, "subject", c.Subject, "scopes", c.Scopes)
	return &Result{Connection: &c, ReturnURL: returnURL}, nil
}

// takeSession checks the callback's state and takes its session. It looks
// at nothing in query but state.
func (f *Flow) takeSession(ctx context.Context, query url.Values) (*tokenkeeper.Session, *FlowError) {
	states := query["state"]
	if len(states) != 1 || states[0] == "" {
		return nil, newFlowError(ReasonStateMissing, tokenkeeper.CodeInvalid,
			"the callback carries no state (or several); start connecting again", nil)
	}
	unknown := newFlowError(ReasonStateUnknown, tokenkeeper.CodeInvalid,
		"the callback's state is unknown or already used; start connecting again", nil)
	// Begin's states are 32 bytes in unpadded base64url: anything else
	// cannot match, and need not cost a query.
	if b, err := base64.RawURLEncoding.Strict().DecodeString(states[0]); err != nil || len(b) != 32 {
		return nil, unknown
	}
	s, err := f.store.TakeSession(ctx, hashState(states[0]))
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		return nil, unknown
	case err != nil:
		return nil, newFlowError(ReasonInternal, tokenkeeper.ErrorCode(err),
			"the connect session could not be read; try again", err)
	}
	return s, nil
}

// checkRedirect reads the error, or else the code, of a redirect whose
// state is verified (RFC 6749 section 4.1.2.1). Parameters without a value
// count as absent (section 3.1).
func checkRedirect(query url.Values) *FlowError {
	if code := cleanProviderText(query.Get("error")); code != "" {
		desc := cleanProviderText(query.Get("error_description"))
		var fe *FlowError
		switch code {
		case "access_denied":
			fe = newFlowError(ReasonDenied, tokenkeeper.CodeForbidden,
				"access was denied at the provider", nil)
		case "server_error", "temporarily_unavailable":
			fe = newFlowError(ReasonProviderError, tokenkeeper.CodeUnavailable,
				"the provider could not handle the authorisation request ("+code+"); try again later", nil)
		default:
			fe = newFlowError(ReasonProviderError, tokenkeeper.CodeInvalid,
				"the provider refused the authorisation request ("+code+")", nil)
		}
		fe.ProviderCode, fe.Description = code, desc
		return fe
	}
	switch codes := query["code"]; {
	case len(codes) == 0 || codes[0] == "":
		return newFlowError(ReasonMissingCode, tokenkeeper.CodeInvalid,
			"the provider's redirect carries neither an authorization code nor an error", nil)
	case len(codes) > 1:
		return newFlowError(ReasonMissingCode, tokenkeeper.CodeInvalid,
			"the provider's redirect carries more than one authorization code", nil)
	}
	return nil
}
