package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TokenResponse is the JSON body of POST /v1/connections/{id}/token, shaped
// like an RFC 6749 section 5.1 response: {"access_token", "token_type",
// "expires_at", "expires_in"}.
//
// It is the one response that carries a token, so json.Marshal reveals
// AccessToken and json.Unmarshal wraps it in a Secret. Everything else sees
// it redacted: fmt (through the Secret) and log/slog (LogValue), so a
// TokenResponse is safe to log, but never write its JSON to a log.
type TokenResponse struct {
	AccessToken tokenkeeper.Secret
	// TokenType is always "Bearer".
	TokenType string
	// ExpiresAt is the keeper's promise ([tokenkeeper.AccessToken]): use the
	// token only until then.
	ExpiresAt time.Time
	// ExpiresIn is the whole seconds from the response to ExpiresAt, rounded
	// down, never negative.
	ExpiresIn int64
}

// tokenJSON is the wire form of TokenResponse.
type tokenJSON struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	ExpiresIn   int64     `json:"expires_in"`
}

// MarshalJSON encodes t with the token in clear.
func (t TokenResponse) MarshalJSON() ([]byte, error) {
	return json.Marshal(tokenJSON{AccessToken: t.AccessToken.Reveal(), TokenType: t.TokenType, ExpiresAt: t.ExpiresAt, ExpiresIn: t.ExpiresIn})
}

// UnmarshalJSON decodes the wire form, wrapping the token in a Secret.
func (t *TokenResponse) UnmarshalJSON(data []byte) error {
	var w tokenJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*t = TokenResponse{AccessToken: tokenkeeper.NewSecret(w.AccessToken), TokenType: w.TokenType, ExpiresAt: w.ExpiresAt, ExpiresIn: w.ExpiresIn}
	return nil
}

// LogValue logs t with the token redacted.
func (t TokenResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("access_token", t.AccessToken), slog.String("token_type", t.TokenType),
		slog.Time("expires_at", t.ExpiresAt), slog.Int64("expires_in", t.ExpiresIn))
}

// tokenRequest is the optional JSON body of POST
// /v1/connections/{id}/token: {"rejected_token": "<the access token the
// provider refused>"}. The token stays raw JSON until [tokenRequest.rejected]
// checks it, so that null, a number and "" each get their own message, and
// no decoding error can quote it.
type tokenRequest struct {
	RejectedToken json.RawMessage `json:"rejected_token,omitempty"`
}

// rejectedToken reads the token route's optional body: the token it
// reports refused, or the zero Secret for no body or none named.
func (s *Server) rejectedToken(w http.ResponseWriter, r *http.Request) (tokenkeeper.Secret, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return tokenkeeper.Secret{}, nil // the usual call, without allocating a body
	}
	var body tokenRequest
	if err := s.readOptionalJSON(w, r, &body); err != nil {
		return tokenkeeper.Secret{}, err
	}
	return body.rejected()
}

// rejected returns the token the body reports refused, or the zero Secret
// when the body names none. Its errors never hold the token.
func (b *tokenRequest) rejected() (tokenkeeper.Secret, error) {
	raw := b.RejectedToken
	if raw == nil {
		return tokenkeeper.Secret{}, nil
	}
	invalid := func(format string, args ...any) (tokenkeeper.Secret, error) {
		return tokenkeeper.Secret{}, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, format, args...)
	}
	if len(raw) == 0 || raw[0] != '"' {
		return invalid(`field "rejected_token" must be a string, not %s`, rawKind(raw))
	}
	var tok string
	if err := json.Unmarshal(raw, &tok); err != nil { // the decoder checked it already
		return invalid(`field "rejected_token" is not a valid JSON string`)
	}
	if tok == "" {
		return invalid(`field "rejected_token" must not be empty: send the access token the provider refused, or no body`)
	}
	return tokenkeeper.NewSecret(tok), nil
}

// rawKind names the JSON type of a raw value as encoding/json's errors do.
func rawKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "bool"
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	}
	return "number"
}

// token serves POST /v1/connections/{id}/token: a valid access token, the
// one response that carries one. With {"rejected_token"} in the body (the
// provider answered 401 to that token), it asks Keeper.Invalidate instead
// of Keeper.Token, which refreshes only if that token is still the
// connection's current one.
func (s *Server) token(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	rejected, err := s.rejectedToken(w, r)
	if err != nil {
		return err
	}
	var tok tokenkeeper.AccessToken
	if rejected.IsZero() {
		tok, err = s.cfg.Keeper.Token(r.Context(), id)
	} else {
		tok, err = s.cfg.Keeper.Invalidate(r.Context(), id, rejected)
	}
	if err != nil {
		return err
	}
	if tok.Value.IsZero() {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "keeper returned an empty token for %s", id)
	}
	in := max(tok.ExpiresAt.Sub(s.now())/time.Second, 0)
	w.Header().Set("Pragma", "no-cache") // RFC 6749 section 5.1, for HTTP/1.0 caches
	s.writeJSON(w, r, http.StatusOK, TokenResponse{
		AccessToken: tok.Value, TokenType: "Bearer",
		ExpiresAt: tok.ExpiresAt.UTC(), ExpiresIn: int64(in),
	})
	return nil
}
