package tokenkeeper_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

// newKey makes a key with scopes or fails t.
func newKey(t testing.TB, scopes ...tokenkeeper.Scope) (tokenkeeper.Secret, *tokenkeeper.APIKey) {
	t.Helper()
	key, rec, err := tokenkeeper.NewAPIKey("ci", scopes, time.Now())
	if err != nil {
		t.Fatalf("NewAPIKey: %v", err)
	}
	return key, rec
}

func TestNewAPIKey(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("UTC+2", 7200))
		key, rec, err := tokenkeeper.NewAPIKey("deploy bot", []tokenkeeper.Scope{tokenkeeper.ScopeTokens, tokenkeeper.ScopeProxy}, at)
		if err != nil {
			t.Fatal(err)
		}
		k := key.Reveal()
		if !strings.HasPrefix(k, "tk_ak") || len(k) != len("tk_")+34+len("_")+52 {
			t.Errorf("key %q does not have the form tk_ak<32>_<52>", k)
		}
		h := sha256.Sum256([]byte(k))
		want := &tokenkeeper.APIKey{
			ID:        rec.ID, // random; checked against the key below
			Name:      "deploy bot",
			Scopes:    []tokenkeeper.Scope{tokenkeeper.ScopeTokens, tokenkeeper.ScopeProxy},
			Hash:      h[:],
			CreatedAt: time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC),
		}
		if diff := cmp.Diff(want, rec); diff != "" {
			t.Errorf("record (-want +got):\n%s", diff)
		}
		if rec.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt %v is not in UTC", rec.CreatedAt)
		}
		id, err := tokenkeeper.ParseAPIKey(key)
		if err != nil || id != rec.ID {
			t.Errorf("ParseAPIKey(key) = %q, %v; want the record's id %q", id, err, rec.ID)
		}
		if !strings.HasPrefix(k, "tk_"+string(rec.ID)+"_") {
			t.Errorf("key %q does not carry the record's id %q", k, rec.ID)
		}
		if !rec.Verify(key) {
			t.Error("Verify(key) = false for the record's own key")
		}
		if rec.Revoked() {
			t.Error("a new key is revoked")
		}
	})
	t.Run("DedupesScopes", func(t *testing.T) {
		s := []tokenkeeper.Scope{"admin", "tokens", "admin", "proxy", "tokens"}
		_, rec, err := tokenkeeper.NewAPIKey("ci", s, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want := []tokenkeeper.Scope{"admin", "tokens", "proxy"} // first appearance kept
		if diff := cmp.Diff(want, rec.Scopes); diff != "" {
			t.Errorf("Scopes (-want +got):\n%s", diff)
		}
		if len(s) != 5 || s[2] != "admin" {
			t.Errorf("NewAPIKey modified its scopes argument: %v", s)
		}
	})
	t.Run("Unique", func(t *testing.T) {
		seen := map[string]bool{}
		for range 100 {
			key, rec := newKey(t, tokenkeeper.ScopeTokens)
			if seen[key.Reveal()] || seen[string(rec.ID)] {
				t.Fatalf("NewAPIKey repeated a key or an id: %s", rec.ID)
			}
			seen[key.Reveal()], seen[string(rec.ID)] = true, true
		}
	})
	t.Run("LongestName", func(t *testing.T) {
		name := strings.Repeat("é", 100) // 200 bytes
		if _, rec, err := tokenkeeper.NewAPIKey(name, []tokenkeeper.Scope{"proxy"}, time.Now()); err != nil || rec.Name != name {
			t.Errorf("NewAPIKey with a 200-byte name: %v", err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		ok := []tokenkeeper.Scope{tokenkeeper.ScopeTokens}
		for _, tc := range []struct {
			what   string
			name   string
			scopes []tokenkeeper.Scope
		}{
			{"empty name", "", ok},
			{"blank name", " \t ", ok},
			{"201-byte name", strings.Repeat("n", 201), ok},
			{"name not UTF-8", "ci\xff", ok},
			{"name with a newline", "ci\nadmin", ok},
			{"name with DEL", "ci\x7f", ok},
			{"nil scopes", "ci", nil},
			{"no scopes", "ci", []tokenkeeper.Scope{}},
			{"unknown scope", "ci", []tokenkeeper.Scope{"tokens", "root"}},
			{"empty scope", "ci", []tokenkeeper.Scope{""}},
			{"scope in the wrong case", "ci", []tokenkeeper.Scope{"Admin"}},
		} {
			key, rec, err := tokenkeeper.NewAPIKey(tc.name, tc.scopes, time.Now())
			if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInvalid {
				t.Errorf("%s: error %v (code %q), want %q", tc.what, err, code, tokenkeeper.CodeInvalid)
			}
			if !key.IsZero() || rec != nil {
				t.Errorf("%s: returned a key or a record with the error", tc.what)
			}
		}
	})
}

func TestAPIKey_Verify(t *testing.T) {
	key, rec := newKey(t, tokenkeeper.ScopeAdmin)
	if !rec.Verify(key) {
		t.Fatal("Verify(key) = false for the record's own key")
	}
	k := key.Reveal()
	// Every one-character change, anywhere, fails.
	for i := range len(k) {
		c := byte('a')
		if k[i] == c {
			c = 'b'
		}
		changed := k[:i] + string(c) + k[i+1:]
		if rec.Verify(tokenkeeper.NewSecret(changed)) {
			t.Errorf("Verify accepted the key changed at byte %d", i)
		}
	}
	other, _ := newKey(t, tokenkeeper.ScopeAdmin)
	for what, s := range map[string]string{
		"another key":  other.Reveal(),
		"the empty":    "",
		"a longer key": k + "a",
		"a prefix":     k[:len(k)-1],
		"upper case":   strings.ToUpper(k),
	} {
		if rec.Verify(tokenkeeper.NewSecret(s)) {
			t.Errorf("Verify accepted %s", what)
		}
	}
	if (&tokenkeeper.APIKey{}).Verify(key) {
		t.Error("a record with no hash verified a key")
	}
	// The whole hash counts: a record whose hash differs in any one byte,
	// or is cut short, refuses the key.
	for i := range rec.Hash {
		bad := *rec
		bad.Hash = append([]byte(nil), rec.Hash...)
		bad.Hash[i] ^= 0x01
		if bad.Verify(key) {
			t.Errorf("Verify accepted the key against a hash changed at byte %d", i)
		}
	}
	if short := (tokenkeeper.APIKey{Hash: rec.Hash[:31]}); short.Verify(key) {
		t.Error("Verify accepted the key against a hash cut short")
	}
}

func TestAPIKey_Allows(t *testing.T) {
	all := tokenkeeper.Scopes()
	for _, tc := range []struct {
		have []tokenkeeper.Scope
		want []tokenkeeper.Scope // of all
	}{
		{[]tokenkeeper.Scope{"admin"}, all},
		{[]tokenkeeper.Scope{"tokens"}, []tokenkeeper.Scope{"tokens"}},
		{[]tokenkeeper.Scope{"proxy"}, []tokenkeeper.Scope{"proxy"}},
		{[]tokenkeeper.Scope{"proxy", "tokens"}, []tokenkeeper.Scope{"tokens", "proxy"}},
		{nil, nil},
	} {
		k := &tokenkeeper.APIKey{Scopes: tc.have}
		var got []tokenkeeper.Scope
		for _, s := range all {
			if k.Allows(s) {
				got = append(got, s)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("a key with %v allows (-want +got):\n%s", tc.have, diff)
		}
		// Revoked, it allows nothing.
		k.RevokedAt = time.Now()
		for _, s := range all {
			if k.Allows(s) {
				t.Errorf("a revoked key with %v allows %s", tc.have, s)
			}
		}
	}
}

func TestScopes(t *testing.T) {
	got := tokenkeeper.Scopes()
	if diff := cmp.Diff([]tokenkeeper.Scope{"tokens", "proxy", "admin"}, got); diff != "" {
		t.Fatalf("Scopes() (-want +got):\n%s", diff)
	}
	for _, s := range got {
		if !s.Valid() {
			t.Errorf("Scope(%q).Valid() = false", s)
		}
	}
	got[0] = "tampered"
	if tokenkeeper.Scopes()[0] != tokenkeeper.ScopeTokens {
		t.Error("Scopes() returned a shared slice")
	}
	for _, s := range []tokenkeeper.Scope{"", "Admin", "admin ", "root", "token"} {
		if s.Valid() {
			t.Errorf("Scope(%q).Valid() = true", s)
		}
	}
}

// TestAPIKey_KeyNotInRecord: the record is what is stored and listed; it
// must not hold the key, nor its secret part, in any field or encoding.
func TestAPIKey_KeyNotInRecord(t *testing.T) {
	key, rec := newKey(t, tokenkeeper.ScopeAdmin)
	k := key.Reveal()
	secret := k[strings.LastIndex(k, "_")+1:]
	js, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{fmt.Sprintf("%v", rec), fmt.Sprintf("%+v", rec), fmt.Sprintf("%#v", rec), string(js), string(rec.Hash)} {
		if strings.Contains(text, secret) || strings.Contains(strings.ToUpper(text), strings.ToUpper(secret)) {
			t.Errorf("the record shows the key's secret: %s", text)
		}
	}
	if h := sha256.Sum256([]byte(k)); string(rec.Hash) != string(h[:]) {
		t.Errorf("Hash = %x, want the SHA-256 of the key %x", rec.Hash, h)
	}
	if s := fmt.Sprint(key); strings.Contains(s, secret) {
		t.Errorf("the key prints as %q", s)
	}
}

// TestAPIKey_Fields: each store maps every field of APIKey to a column, and
// storetest sets each. A new field must reach both stores and the suite;
// this list fails first, to say so.
func TestAPIKey_Fields(t *testing.T) {
	wantFields(t, reflect.TypeFor[tokenkeeper.APIKey](),
		"ID tokenkeeper.APIKeyID", "Name string", "Scopes []tokenkeeper.Scope", "Hash []uint8",
		"CreatedAt time.Time", "RevokedAt time.Time")
}

// wantFields fails t unless typ's fields are want ("Name type"), in order.
func wantFields(t *testing.T, typ reflect.Type, want ...string) {
	t.Helper()
	var got []string
	for f := range typ.Fields() {
		got = append(got, f.Name+" "+f.Type.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields of %s changed (-want +got); update the stores (sqlite, postgres), their migrations and storetest, then this list:\n%s", typ, diff)
	}
}

// malformedKeys returns inputs that do not have the form of an API key,
// built around the well-formed key.
func malformedKeys(key string) map[string]string {
	id, secret, _ := strings.Cut(strings.TrimPrefix(key, "tk_"), "_")
	return map[string]string{
		"empty":                  "",
		"prefix only":            "tk_",
		"no prefix":              id + "_" + secret,
		"another prefix":         "sk_" + id + "_" + secret,
		"upper-case prefix":      "TK_" + id + "_" + secret,
		"no separator":           "tk_" + id + secret,
		"another separator":      "tk_" + id + "-" + secret,
		"extra part":             key + "_" + secret[:4],
		"short id":               "tk_" + id[:33] + "_" + secret,
		"long id":                "tk_" + id + "a_" + secret,
		"short secret":           "tk_" + id + "_" + secret[:51],
		"long secret":            key + "a",
		"id without ak":          "tk_" + "bk" + id[2:] + "_" + secret,
		"upper-case ak":          "tk_" + "AK" + id[2:] + "_" + secret,
		"not base32 in the id":   "tk_" + id[:10] + "1" + id[11:] + "_" + secret,
		"not base32 in secret":   "tk_" + id + "_" + secret[:20] + "8" + secret[21:],
		"padding in the secret":  "tk_" + id + "_" + secret[:51] + "=",
		"space inside":           "tk_" + id + "_" + secret[:20] + " " + secret[21:],
		"leading space":          " " + key[:len(key)-1],
		"NUL inside":             "tk_" + id + "_" + secret[:20] + "\x00" + secret[21:],
		"non-ASCII inside":       "tk_" + id[:31] + "é_" + secret,
		"Bearer scheme included": "Bearer " + key,
	}
}

func TestParseAPIKey(t *testing.T) {
	key, rec := newKey(t, tokenkeeper.ScopeTokens)
	id, err := tokenkeeper.ParseAPIKey(key)
	if err != nil || id != rec.ID {
		t.Fatalf("ParseAPIKey = %q, %v; want %q", id, err, rec.ID)
	}
	for what, s := range malformedKeys(key.Reveal()) {
		id, err := tokenkeeper.ParseAPIKey(tokenkeeper.NewSecret(s))
		if err == nil || id != "" {
			t.Errorf("ParseAPIKey(%s) = %q, %v; want an error", what, id, err)
			continue
		}
		if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeUnauthorized {
			t.Errorf("ParseAPIKey(%s): code %q, want %q", what, code, tokenkeeper.CodeUnauthorized)
		}
		wantNoEcho(t, what, err, s)
	}
}

// wantNoEcho fails t unless err, in each form it can be printed in, is
// the error of every other malformed key, so it cannot repeat input.
func wantNoEcho(t *testing.T, what string, err error, input string) {
	t.Helper()
	_, ref := tokenkeeper.ParseAPIKey(tokenkeeper.NewSecret("x"))
	for _, format := range []string{"%v", "%+v", "%#v", "%q"} {
		if got, want := fmt.Sprintf(format, err), fmt.Sprintf(format, ref); got != want {
			t.Errorf("%s: error %s = %s, want the same as for any malformed key, %s", what, format, got, want)
		}
	}
	if got, want := tokenkeeper.ErrorMessage(err), tokenkeeper.ErrorMessage(ref); got != want {
		t.Errorf("%s: ErrorMessage = %q, want %q", what, got, want)
	}
	if len(input) >= 8 && strings.Contains(err.Error(), input) && !strings.Contains(ref.Error(), input) {
		t.Errorf("%s: error %q repeats the input", what, err)
	}
}

func FuzzParseAPIKey(f *testing.F) {
	key, _ := newKey(f, tokenkeeper.ScopeTokens)
	f.Add(key.Reveal())
	for _, s := range malformedKeys(key.Reveal()) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tokenkeeper.ParseAPIKey(tokenkeeper.NewSecret(s))
		if err != nil {
			if id != "" {
				t.Errorf("ParseAPIKey(%q) = %q with error %v", s, id, err)
			}
			if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeUnauthorized {
				t.Errorf("ParseAPIKey(%q): code %q, want %q", s, code, tokenkeeper.CodeUnauthorized)
			}
			wantNoEcho(t, fmt.Sprintf("%q", s), err, s)
			return
		}
		// A key that parses is tk_<id>_<52 characters>, and its id is ak
		// and 32 characters of the key alphabet.
		if !strings.HasPrefix(s, "tk_"+string(id)+"_") || len(s) != len("tk_")+34+1+52 ||
			len(id) != 34 || !strings.HasPrefix(string(id), "ak") {
			t.Errorf("ParseAPIKey(%q) = %q, which is not the key's id", s, id)
		}
		for _, c := range []byte(s[3:]) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' || c == '_') {
				t.Errorf("ParseAPIKey(%q) accepted the byte %q", s, c)
			}
		}
	})
}
