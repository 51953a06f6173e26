package httpapi

import (
	"net/http"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// authenticate checks the request's API key (Authorization: Bearer <key>,
// RFC 6750 section 2.1) and that it allows scope. It reads the key's record
// through the key cache (Config.APIKeyCacheTTL), and hashes and compares the
// whole key on every request. On
// failure it sets WWW-Authenticate (RFC 6750 section 3) and returns
// CodeUnauthorized (no key, a malformed, unknown, wrong or revoked key: the
// message does not say which of the last three) or CodeForbidden (a valid
// key without the scope; admin allows every scope).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, scope tokenkeeper.Scope) (*tokenkeeper.APIKey, error) {
	const realm = `Bearer realm="tokenkeeper"`
	invalid := func(msg string) error {
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		return tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "%s", msg)
	}
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		w.Header().Set("WWW-Authenticate", realm)
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnauthorized, "an API key is required: send Authorization: Bearer <key>")
	}
	scheme, raw, ok := strings.Cut(values[0], " ")
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, invalid("the Authorization header must be one \"Bearer <key>\"")
	}
	key := tokenkeeper.NewSecret(strings.TrimSpace(raw))
	id, err := tokenkeeper.ParseAPIKey(key)
	if err != nil {
		return nil, invalid("the API key is malformed")
	}
	rec, err := s.keys.get(r.Context(), id)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		return nil, invalid("the API key is not valid")
	case err != nil:
		return nil, err
	case !rec.Verify(key) || rec.Revoked():
		return nil, invalid("the API key is not valid")
	case !rec.Allows(scope):
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+string(scope)+`"`)
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeForbidden, "this API key lacks the %s scope", scope)
	}
	return rec, nil
}

// actor names the caller in audit entries.
func actor(key *tokenkeeper.APIKey) string { return "apikey:" + string(key.ID) }
