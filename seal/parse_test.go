package seal_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/mac"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// tinkKeyset returns a cleartext JSON keyset made by Tink from template,
// bypassing seal's checks.
func tinkKeyset(t *testing.T, template *tinkpb.KeyTemplate) []byte {
	t.Helper()
	h, err := keyset.NewHandle(template)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// edit decodes keyset JSON, applies f to it, and encodes it again.
func edit(t *testing.T, data []byte, f func(ks map[string]any)) []byte {
	t.Helper()
	var ks map[string]any
	if err := json.Unmarshal(data, &ks); err != nil {
		t.Fatal(err)
	}
	f(ks)
	out, err := json.Marshal(ks)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	c := newChecker(t)
	good := c.generate()
	// A keyset with a second, disabled key: the key is ignored.
	added, addedID, err := seal.AddKey(good)
	c.ok(err)
	c.record(added)
	disabled := edit(t, added, func(ks map[string]any) {
		ks["key"].([]any)[1].(map[string]any)["status"] = "DISABLED"
	})

	t.Run("OK", func(t *testing.T) {
		c := c.sub(t)
		k := c.parse(disabled)
		for _, id := range k.KeyIDs() {
			if id == addedID {
				t.Errorf("KeyIDs %q holds the disabled key %s", k.KeyIDs(), addedID)
			}
		}
	})

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"ErrEmptyInput", nil, "not a cleartext Tink JSON keyset"},
		{"ErrGarbage", []byte("not json " + plaintext), "not a cleartext Tink JSON keyset"},
		{"ErrGarbageField", []byte(`{"key": "` + plaintext + `"}`), "not a cleartext Tink JSON keyset"},
		{"ErrEncrypted", []byte(`{"encryptedKeyset": "AAAA", "keysetInfo": {}}`), "not a cleartext Tink JSON keyset"},
		{"ErrNoKeys", []byte(`{}`), "holds no keys"},
		{"ErrEmptyKeyList", []byte(`{"primaryKeyId": 1, "key": []}`), "holds no keys"},
		{"ErrNotAEAD", c.record(tinkKeyset(t, mac.HMACSHA256Tag256KeyTemplate())),
			`"type.googleapis.com/google.crypto.tink.HmacKey", which is not an AEAD key type`},
		{"ErrRawPrefix", c.record(tinkKeyset(t, aead.AES256GCMNoPrefixKeyTemplate())),
			"has output prefix RAW"},
		{"ErrNoPrimary", edit(t, good, func(ks map[string]any) { ks["primaryKeyId"] = 42 }),
			"no enabled primary key (primaryKeyId 42)"},
		{"ErrDisabledPrimary", edit(t, good, func(ks map[string]any) {
			ks["key"].([]any)[0].(map[string]any)["status"] = "DISABLED"
		}), "no enabled primary key"},
		{"ErrBadKeyValue", edit(t, good, func(ks map[string]any) {
			ks["key"].([]any)[0].(map[string]any)["keyData"].(map[string]any)["value"] = "AAAA"
		}), "a key is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := seal.Parse(tt.data)
			c.sub(t).fail(err, tokenkeeper.CodeInvalid, tt.want)
			if k != nil {
				t.Error("Parse returned a Keyset with its error")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, err := seal.Generate()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"primaryKeyId": 1, "key": []}`))
	f.Add([]byte(`{"primaryKeyId": 1, "key": [{"keyId": 1, "status": "ENABLED", "outputPrefixType": "TINK"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := seal.Parse(data)
		if err != nil {
			if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInvalid {
				t.Fatalf("code = %q, want invalid: %v", code, err)
			}
			return
		}
		// What parses must seal and open.
		s, err := k.Seal([]byte(plaintext), adAccessA)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Open(s, adAccessA); err != nil {
			t.Fatal(err)
		}
	})
}
