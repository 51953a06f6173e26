package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// keyStore returns s as an APIKeyStore, or fails t: every Store that runs
// the suite keeps API keys too.
func keyStore(t *testing.T, s tokenkeeper.Store) tokenkeeper.APIKeyStore {
	t.Helper()
	ks, ok := s.(tokenkeeper.APIKeyStore)
	if !ok {
		t.Fatalf("%T does not implement tokenkeeper.APIKeyStore", s)
	}
	return ks
}

// withKeys adapts a test of an APIKeyStore to a test.
func withKeys(run func(t *testing.T, ks tokenkeeper.APIKeyStore)) func(*testing.T, tokenkeeper.Store) {
	return func(t *testing.T, s tokenkeeper.Store) { run(t, keyStore(t, s)) }
}

// apiKey returns a new key record named name, made by NewAPIKey, created
// at created, with a hash that starts and ends with a NUL byte (which a
// store that took it for text would lose).
func apiKey(t *testing.T, name string, created time.Time) *tokenkeeper.APIKey {
	t.Helper()
	_, k, err := tokenkeeper.NewAPIKey(name, []tokenkeeper.Scope{tokenkeeper.ScopeProxy, tokenkeeper.ScopeTokens}, created)
	if err != nil {
		t.Fatalf("NewAPIKey(%q): %v", name, err)
	}
	k.Hash[0], k.Hash[len(k.Hash)-1] = 0, 0
	return k
}

// createKey stores k or fails t.
func createKey(t *testing.T, ks tokenkeeper.APIKeyStore, k *tokenkeeper.APIKey) {
	t.Helper()
	if err := ks.CreateAPIKey(t.Context(), k); err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", k.ID, err)
	}
}

// getKey reads the key id or fails t.
func getKey(t *testing.T, ks tokenkeeper.APIKeyStore, id tokenkeeper.APIKeyID) *tokenkeeper.APIKey {
	t.Helper()
	k, err := ks.GetAPIKey(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAPIKey(%s): %v", id, err)
	}
	for name, v := range map[string]time.Time{"CreatedAt": k.CreatedAt, "RevokedAt": k.RevokedAt} {
		if v.Location() != time.UTC || v.Nanosecond()%1000 != 0 {
			t.Errorf("API key %s: %s = %v, want UTC and whole microseconds", id, name, v)
		}
	}
	return k
}

// listKeys returns ListAPIKeys or fails t.
func listKeys(t *testing.T, ks tokenkeeper.APIKeyStore) []*tokenkeeper.APIKey {
	t.Helper()
	keys, err := ks.ListAPIKeys(t.Context())
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	return keys
}

func createAPIKeyTests() []test {
	return []test{
		{"OK", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k := apiKey(t, "ci", now())
			k.Scopes = []tokenkeeper.Scope{tokenkeeper.ScopeAdmin, tokenkeeper.ScopeTokens} // order kept
			sent := *k
			sent.Hash = append([]byte(nil), k.Hash...)
			createKey(t, ks, k)
			wantEqual(t, "CreateAPIKey modified its argument", k, &sent)
			wantEqual(t, "GetAPIKey", getKey(t, ks, k.ID), k)
		})},
		{"RevokedAt", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			// Every field is stored as given, RevokedAt included.
			k := apiKey(t, "old", now().Add(-time.Hour))
			k.RevokedAt = now()
			createKey(t, ks, k)
			wantEqual(t, "GetAPIKey", getKey(t, ks, k.ID), k)
		})},
		{"TimesUTCTruncated", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			zone := time.FixedZone("UTC-3", -3*3600)
			k := apiKey(t, "ci", now())
			k.CreatedAt = time.Date(2025, 3, 1, 12, 0, 0, 123456789, zone)
			k.RevokedAt = time.Date(2025, 3, 2, 12, 0, 0, 999, zone)
			createKey(t, ks, k)
			want := *k
			want.CreatedAt = k.CreatedAt.UTC().Truncate(time.Microsecond)
			want.RevokedAt = k.RevokedAt.UTC().Truncate(time.Microsecond)
			wantEqual(t, "GetAPIKey", getKey(t, ks, k.ID), &want)
		})},
		{"TextRoundTrip", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k := apiKey(t, "<&>'\"\\ \u2028\u2029 \ufffd \U0001f511 e\u0301 \t", now())
			createKey(t, ks, k)
			wantEqual(t, "GetAPIKey", getKey(t, ks, k.ID), k)
		})},
		{"ErrConflict", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			first := apiKey(t, "first", now())
			createKey(t, ks, first)
			second := apiKey(t, "second", now())
			second.ID = first.ID
			wantCode(t, ks.CreateAPIKey(t.Context(), second), tokenkeeper.CodeConflict)
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{first})
		})},
		{"ErrInvalid", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			wantCode(t, ks.CreateAPIKey(t.Context(), nil), tokenkeeper.CodeInvalid)
			for what, set := range map[string]func(*tokenkeeper.APIKey){
				"no ID":         func(k *tokenkeeper.APIKey) { k.ID = "" },
				"nil Hash":      func(k *tokenkeeper.APIKey) { k.Hash = nil },
				"empty Hash":    func(k *tokenkeeper.APIKey) { k.Hash = []byte{} },
				"nil Scopes":    func(k *tokenkeeper.APIKey) { k.Scopes = nil },
				"empty Scopes":  func(k *tokenkeeper.APIKey) { k.Scopes = []tokenkeeper.Scope{} },
				"unknown scope": func(k *tokenkeeper.APIKey) { k.Scopes = []tokenkeeper.Scope{"tokens", "root"} },
				"empty Name":    func(k *tokenkeeper.APIKey) { k.Name = "" },
				"blank Name":    func(k *tokenkeeper.APIKey) { k.Name = " \t " },
				"long Name":     func(k *tokenkeeper.APIKey) { k.Name = strings.Repeat("n", 201) },
				"control Name":  func(k *tokenkeeper.APIKey) { k.Name = "line\nbreak" },
			} {
				k := apiKey(t, "ci", now())
				set(k)
				if err := ks.CreateAPIKey(t.Context(), k); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
					t.Errorf("CreateAPIKey with %s: %v, want code %q", what, err, tokenkeeper.CodeInvalid)
				}
			}
			// The longest name NewAPIKey allows is fine.
			k := apiKey(t, strings.Repeat("n", 200), now())
			createKey(t, ks, k)
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{k})
		})},
		{"ErrInvalidUTF8", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			for field, set := range map[string]func(*tokenkeeper.APIKey){
				"ID":     func(k *tokenkeeper.APIKey) { k.ID = "ak\xff" },
				"Name":   func(k *tokenkeeper.APIKey) { k.Name = "ci \xc3" },
				"Scopes": func(k *tokenkeeper.APIKey) { k.Scopes = []tokenkeeper.Scope{"tokens", "pro\xffxy"} },
			} {
				k := apiKey(t, "ci", now())
				set(k)
				wantInvalidText(t, ks.CreateAPIKey(t.Context(), k), field)
			}
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{})
		})},
	}
}

func getAPIKeyTests() []test {
	return []test{
		{"ErrNotFound", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			createKey(t, ks, apiKey(t, "ci", now()))
			_, err := ks.GetAPIKey(t.Context(), apiKey(t, "other", now()).ID)
			wantCode(t, err, tokenkeeper.CodeNotFound)
		})},
	}
}
