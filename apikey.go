package tokenkeeper

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Scope is what an API key may do. The string values are stored and sent on
// the wire; they never change.
type Scope string

// The scopes. [ScopeAdmin] implies the other two.
const (
	// ScopeTokens: read connections and take their access tokens.
	ScopeTokens Scope = "tokens"
	// ScopeProxy: send provider API calls through tokenkeeper's proxy.
	ScopeProxy Scope = "proxy"
	// ScopeAdmin: everything, including connect sessions, deletions, forced
	// refreshes and API keys.
	ScopeAdmin Scope = "admin"
)

// Scopes returns every valid Scope. The slice is new on each call.
func Scopes() []Scope { return []Scope{ScopeTokens, ScopeProxy, ScopeAdmin} }

// Valid reports whether s is one of [Scopes].
func (s Scope) Valid() bool {
	switch s {
	case ScopeTokens, ScopeProxy, ScopeAdmin:
		return true
	}
	return false
}

// APIKeyID is the public part of an API key: it names the key in lists,
// audit entries and logs, and finds its record. It is not a secret.
type APIKeyID string

// APIKey is an API key as stored: never the key itself, only its SHA-256.
// The key is 160 random bits (the id) and 256 random bits (the secret), so a
// fast hash is enough: nobody can guess a preimage, and a copy of the
// database cannot be turned back into keys.
type APIKey struct {
	ID     APIKeyID
	Name   string
	Scopes []Scope
	// Hash is the SHA-256 of the whole key string.
	Hash      []byte
	CreatedAt time.Time
	// RevokedAt is when the key was revoked; zero while it is valid.
	RevokedAt time.Time
}

// Revoked reports whether the key has been revoked.
func (k *APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// Allows reports whether the key grants scope s: s is valid, the key is not
// revoked, and it holds s or [ScopeAdmin].
func (k *APIKey) Allows(s Scope) bool {
	if k.Revoked() || !s.Valid() {
		return false
	}
	for _, have := range k.Scopes {
		if have == s || have == ScopeAdmin {
			return true
		}
	}
	return false
}

// Verify reports, in constant time, whether key is this record's key.
func (k *APIKey) Verify(key Secret) bool {
	h := sha256.Sum256([]byte(key.Reveal()))
	return subtle.ConstantTimeCompare(h[:], k.Hash) == 1
}

// apiKeyPrefix starts every API key, so that secret scanners (and people)
// recognise one.
const apiKeyPrefix = "tk_"

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewAPIKey makes a new key named name with scopes, created at now. It
// returns the key, which is shown once and never stored, and the record to
// store. CodeInvalid if name is empty, longer than 200 bytes or not UTF-8,
// or a scope is not valid or there is none.
func NewAPIKey(name string, scopes []Scope, now time.Time) (Secret, *APIKey, error) {
	if err := validAPIKeyName(name); err != nil {
		return Secret{}, nil, err
	}
	if len(scopes) == 0 {
		return Secret{}, nil, Errorf(CodeInvalid, "an API key needs at least one scope (tokens, proxy or admin)")
	}
	seen := map[Scope]bool{}
	var clean []Scope
	for _, s := range scopes {
		if !s.Valid() {
			return Secret{}, nil, Errorf(CodeInvalid, "unknown scope %q; want tokens, proxy or admin", string(s))
		}
		if !seen[s] {
			seen[s] = true
			clean = append(clean, s)
		}
	}
	var id [20]byte
	var secret [32]byte
	rand.Read(id[:])
	rand.Read(secret[:])
	kid := APIKeyID("ak" + strings.ToLower(keyEncoding.EncodeToString(id[:])))
	key := apiKeyPrefix + string(kid) + "_" + strings.ToLower(keyEncoding.EncodeToString(secret[:]))
	h := sha256.Sum256([]byte(key))
	return NewSecret(key), &APIKey{
		ID:        kid,
		Name:      name,
		Scopes:    clean,
		Hash:      h[:],
		CreatedAt: now.UTC().Truncate(time.Microsecond),
	}, nil
}

// ParseAPIKey returns the id of key, which a store looks up before
// [APIKey.Verify] checks the whole key. CodeUnauthorized if key does not
// have the form of an API key; the error never repeats it.
func ParseAPIKey(key Secret) (APIKeyID, error) {
	s := key.Reveal()
	rest, ok := strings.CutPrefix(s, apiKeyPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 34 || len(secret) != 52 || !strings.HasPrefix(id, "ak") {
		return "", Errorf(CodeUnauthorized, "the API key is malformed")
	}
	for _, part := range []string{id[2:], secret} {
		if part != strings.ToLower(part) {
			return "", Errorf(CodeUnauthorized, "the API key is malformed")
		}
		if _, err := keyEncoding.DecodeString(strings.ToUpper(part)); err != nil {
			return "", Errorf(CodeUnauthorized, "the API key is malformed")
		}
	}
	return APIKeyID(id), nil
}

// Validate reports whether k can be stored: an id, text fields that
// [CheckStoredText] accepts, a valid name, at least one scope, every scope
// valid, and a SHA-256 hash. It returns a [CodeInvalid]
// error naming what is wrong.
func (k *APIKey) Validate() error {
	if err := CheckStoredText("ID", string(k.ID)); err != nil {
		return err
	}
	if err := CheckStoredText("Name", k.Name); err != nil {
		return err
	}
	for i, sc := range k.Scopes {
		if err := CheckStoredText(fmt.Sprintf("Scopes[%d]", i), string(sc)); err != nil {
			return err
		}
	}
	switch {
	case k.ID == "":
		return Errorf(CodeInvalid, "the API key has no ID")
	case len(k.Hash) == 0:
		return Errorf(CodeInvalid, "the API key has no hash")
	}
	if err := validAPIKeyName(k.Name); err != nil {
		return err
	}
	if len(k.Scopes) == 0 {
		return Errorf(CodeInvalid, "an API key needs at least one scope (tokens, proxy or admin)")
	}
	for _, s := range k.Scopes {
		if !s.Valid() {
			return Errorf(CodeInvalid, "unknown scope %q; want tokens, proxy or admin", string(s))
		}
	}
	if len(k.Hash) != 32 {
		return Errorf(CodeInvalid, "the API key hash is %d bytes; want a 32-byte SHA-256", len(k.Hash))
	}
	return nil
}

func validAPIKeyName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return Errorf(CodeInvalid, "an API key needs a name")
	case len(name) > 200:
		return Errorf(CodeInvalid, "the API key name is %d bytes; the limit is 200", len(name))
	case !validText(name):
		return Errorf(CodeInvalid, "the API key name is not valid UTF-8 text")
	}
	return nil
}

// validText reports whether s is valid UTF-8 without control characters
// other than tab.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}
