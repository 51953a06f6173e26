package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// APIKey is the JSON form of an API key's record: never the key itself.
// RevokedAt is null while the key is valid.
type APIKey struct {
	ID        tokenkeeper.APIKeyID `json:"id"`
	Name      string               `json:"name"`
	Scopes    []tokenkeeper.Scope  `json:"scopes"`
	CreatedAt time.Time            `json:"created_at"`
	RevokedAt *time.Time           `json:"revoked_at"`
}

// APIKeyList is the JSON body of GET /v1/api-keys: every key, revoked ones
// included, oldest first.
type APIKeyList struct {
	APIKeys []*APIKey `json:"api_keys"`
}

// CreateAPIKeyRequest is the JSON body of POST /v1/api-keys.
type CreateAPIKeyRequest struct {
	Name   string              `json:"name"`
	Scopes []tokenkeeper.Scope `json:"scopes"`
}

// CreatedAPIKey is the JSON body of POST /v1/api-keys' 201: the key, shown
// this once, and its record: {"key", "id", "name", "scopes", "created_at"}.
//
// It is the one value whose JSON holds an API key in clear, because that is
// what it is for: json.Marshal reveals Key, and json.Unmarshal wraps it in a
// Secret. Everything else sees Key redacted: fmt (through the Secret) and
// log/slog (LogValue), so a CreatedAPIKey is safe to log, but never write
// its JSON to a log.
type CreatedAPIKey struct {
	Key tokenkeeper.Secret
	APIKey
}

// createdAPIKeyJSON is the wire form of CreatedAPIKey.
type createdAPIKeyJSON struct {
	Key       string               `json:"key"`
	ID        tokenkeeper.APIKeyID `json:"id"`
	Name      string               `json:"name"`
	Scopes    []tokenkeeper.Scope  `json:"scopes"`
	CreatedAt time.Time            `json:"created_at"`
}

// MarshalJSON encodes k with the key in clear.
func (k CreatedAPIKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(createdAPIKeyJSON{Key: k.Key.Reveal(), ID: k.ID, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt})
}

// UnmarshalJSON decodes the wire form, wrapping the key in a Secret.
func (k *CreatedAPIKey) UnmarshalJSON(data []byte) error {
	var w createdAPIKeyJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*k = CreatedAPIKey{Key: tokenkeeper.NewSecret(w.Key), APIKey: APIKey{ID: w.ID, Name: w.Name, Scopes: w.Scopes, CreatedAt: w.CreatedAt}}
	return nil
}

// LogValue logs k with the key redacted.
func (k CreatedAPIKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("key", k.Key), slog.String("id", string(k.ID)),
		slog.String("name", k.Name), slog.Any("scopes", k.Scopes), slog.Time("created_at", k.CreatedAt))
}

// FromAPIKey returns the JSON form of an API key's record.
func FromAPIKey(k *tokenkeeper.APIKey) *APIKey {
	out := &APIKey{ID: k.ID, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt.UTC(), RevokedAt: optTime(k.RevokedAt)}
	if out.Scopes == nil {
		out.Scopes = []tokenkeeper.Scope{}
	}
	return out
}
func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, _ *tokenkeeper.APIKey) error {
	if _, err := queryOf(r); err != nil {
		return err
	}
	keys, err := s.cfg.APIKeys.ListAPIKeys(r.Context())
	if err != nil {
		return err
	}
	out := APIKeyList{APIKeys: make([]*APIKey, 0, len(keys))}
	for _, k := range keys {
		out.APIKeys = append(out.APIKeys, FromAPIKey(k))
	}
	s.writeJSON(w, r, http.StatusOK, out)
	return nil
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	var req CreateAPIKeyRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	secret, rec, err := tokenkeeper.NewAPIKey(req.Name, req.Scopes, s.now())
	if err != nil {
		return err
	}
	if err := s.cfg.APIKeys.CreateAPIKey(r.Context(), rec); err != nil {
		return err
	}
	scopes := make([]string, len(rec.Scopes))
	for i, sc := range rec.Scopes {
		scopes[i] = string(sc)
	}
	s.audit(r, key, "apikey.create", "", fmt.Sprintf("id=%s name=%q scopes=%s", rec.ID, rec.Name, strings.Join(scopes, ",")))
	s.writeJSON(w, r, http.StatusCreated, CreatedAPIKey{Key: secret, APIKey: *FromAPIKey(rec)})
	return nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	id := tokenkeeper.APIKeyID(r.PathValue("id"))
	if !validAPIKeyID(id) {
		return invalidf("the API key id is malformed: want \"ak\" and 32 characters of a-z and 2-7")
	}
	if _, err := queryOf(r); err != nil {
		return err
	}
	ctx := r.Context()
	defer s.keys.drop(id)
	if err := s.cfg.APIKeys.RevokeAPIKey(ctx, id, s.now().UTC().Truncate(time.Microsecond)); err != nil {
		return err
	}
	rec, err := s.cfg.APIKeys.GetAPIKey(ctx, id)
	if err != nil {
		return err
	}
	s.audit(r, key, "apikey.revoke", "", "id="+string(id))
	s.writeJSON(w, r, http.StatusOK, FromAPIKey(rec))
	return nil
}

// validAPIKeyID reports whether id has the form NewAPIKey gives ids.
func validAPIKeyID(id tokenkeeper.APIKeyID) bool {
	rest, ok := strings.CutPrefix(string(id), "ak")
	if !ok || len(rest) != 32 {
		return false
	}
	for _, c := range rest {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}
