package connect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/tokenkeeper/tokenkeeper"
)

// A flow may be bound to the browser that began it (RFC 6749 section
// 10.12; RFC 9700 section 4.7.1 accepts PKCE as CSRF protection only when
// the verifier is tied to the user's session). The binding is a value the
// web layer keeps in the browser, typically a cookie: Begin gets it in
// BeginRequest.Binding, Callback in CallbackRequest.Binding.
//
// Nothing new is stored. The binding's SHA-256 goes into the associated
// data that seals the session's PKCE verifier, so the verifier opens only
// for a callback that presents the same binding. A session begun without a
// binding seals with the plain field name and opens for any callback.

// verifierAD binds a sealed verifier to its session and, if binding is not
// empty, to the browser that holds binding.
func verifierAD(stateHash []byte, binding string) []byte {
	field := tokenkeeper.FieldCodeVerifier
	if binding != "" {
		sum := sha256.Sum256([]byte(binding))
		field += "/" + hex.EncodeToString(sum[:])
	}
	return tokenkeeper.AssociatedData(tokenkeeper.SealKindSession, hex.EncodeToString(stateHash), field)
}

// openVerifier opens the session's PKCE verifier for a callback that
// presented binding. It is also the browser check: the verifier opens with
// the callback's binding if the session was begun with that binding, and
// with none if it was begun without one (which any callback may finish).
//
// An AEAD cannot tell associated data that differs from a key it lacks or
// a ciphertext that was altered, and the Sealer reports all three as
// CodeInternal. So a verifier that opens neither way is taken for a flow
// begun in another browser (the common cause, and the safe reading: the
// flow fails either way); the sealer's error goes to the log, for the
// rare other causes. Any other code (a sealer that is unavailable) is
// ReasonInternal with that code.
//
// Neither FlowError names the session: the browser is not known to be the
// one that began it.
func (f *Flow) openVerifier(ctx context.Context, s *tokenkeeper.Session, binding string) ([]byte, *FlowError) {
	v, err := f.sealer.Open(s.Verifier, verifierAD(s.StateHash, binding))
	if err == nil {
		return v, nil
	}
	if binding != "" {
		// A session begun without a binding accepts any browser.
		v, unboundErr := f.sealer.Open(s.Verifier, verifierAD(s.StateHash, ""))
		if unboundErr == nil {
			return v, nil
		}
	}
	if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInternal {
		return nil, newFlowError(ReasonInternal, code, "the connect session could not be read; try again", err)
	}
	f.log.WarnContext(ctx, "connect: a callback came from another browser than the one that began the flow (or its session cannot be opened)",
		"connection", s.ConnectionID, "binding_presented", binding != "", "error", err)
	return nil, newFlowError(ReasonWrongBrowser, tokenkeeper.CodeForbidden,
		"this sign-in was started in another browser; start connecting again in this one", nil)
}
