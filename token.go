package tokenkeeper

import "time"

// AccessToken is what callers get: a bearer token and the time until which
// tokenkeeper promises it stays valid.
//
// ExpiresAt is a promise, not the provider's expiry: tokenkeeper refreshes
// (and so, with Pleo, kills) the token only after ExpiresAt plus a short
// drain grace, unless an operator forces a refresh or a 401 shows the token
// is already dead. It is earlier than the provider's expiry. A caller that
// uses the token at once, and never after ExpiresAt, never sees a 401 from
// rotation.
type AccessToken struct {
	Value     Secret
	ExpiresAt time.Time
}

// Valid reports whether t holds a value and now is before its ExpiresAt.
func (t AccessToken) Valid(now time.Time) bool {
	return !t.Value.IsZero() && now.Before(t.ExpiresAt)
}

// TokenSet is the plaintext token set of a connection, as it exists in
// memory only. At rest it is a [SealedTokenSet].
type TokenSet struct {
	AccessToken  Secret
	RefreshToken Secret
	// Expiry is the provider's expiry of the access token, computed from
	// expires_in and the moment the request was sent (not when the response
	// arrived).
	Expiry time.Time
	// ExpiresAt is the promise handed out with the access token (see
	// [AccessToken]). Every process hands out this same value, because it is
	// stored with the token set.
	ExpiresAt time.Time
	// Scope is the scope the provider granted with this token, as sent.
	Scope string
}

// Token field names, used in the associated data of sealed values so that
// a ciphertext opens only as the field of the connection it was sealed for.
const (
	FieldAccessToken  = "access_token"
	FieldRefreshToken = "refresh_token"
	FieldCodeVerifier = "code_verifier"
)

// Grant is the outcome of a finished connect flow (an authorization code
// exchange, RFC 6749 section 4.1.3), handed to the keeper to persist.
type Grant struct {
	ConnectionID ConnectionID
	// Provider is the provider profile's name.
	Provider string
	// Scopes are the scopes granted (the response's scope, or those asked
	// for if the provider did not say, RFC 6749 section 5.1).
	Scopes []string
	// Subject is who the grant is for (GET /v1/introspect's subjectURN),
	// learned with the new access token before the grant is stored, so that
	// the tokens and the subject are written together: two flows finishing
	// at once for one connection can never leave one company's tokens
	// under another's subject. "" if it could not be learned.
	Subject string
	// Tokens holds the new tokens. Tokens.Expiry is computed from the moment
	// the exchange request was sent. Tokens.ExpiresAt is left zero: the
	// keeper plans it.
	Tokens TokenSet
}
