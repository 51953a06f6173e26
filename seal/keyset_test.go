package seal_test

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

func TestKeyset_Seal(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c := newChecker(t)
		k := c.parse(c.generate())
		s, err := k.Seal([]byte(plaintext), adAccessA)
		c.ok(err)
		if s.KeyID != k.PrimaryKeyID() {
			t.Errorf("KeyID = %q, want the primary key %q", s.KeyID, k.PrimaryKeyID())
		}
		if bytes.Contains(s.Ciphertext, []byte(plaintext)) {
			t.Error("ciphertext contains the plaintext")
		}
		again, err := k.Seal([]byte(plaintext), adAccessA)
		c.ok(err)
		if bytes.Equal(s.Ciphertext, again.Ciphertext) {
			t.Error("two seals of one plaintext are equal: the nonce is not random")
		}
		got, err := k.Open(s, adAccessA)
		c.ok(err)
		if diff := cmp.Diff(plaintext, string(got)); diff != "" {
			t.Errorf("Open (-want +got):\n%s", diff)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		c := newChecker(t)
		k := c.parse(c.generate())
		s, err := k.Seal(nil, adAccessA)
		c.ok(err)
		got, err := k.Open(s, adAccessA)
		c.ok(err)
		if len(got) != 0 {
			t.Errorf("Open = %q, want empty", got)
		}
	})
	t.Run("ErrNilKeyset", func(t *testing.T) {
		c := newChecker(t)
		var k *seal.Keyset
		_, err := k.Seal([]byte(plaintext), adAccessA)
		c.fail(err, tokenkeeper.CodeInternal, "no keyset")
		_, err = k.Open(tokenkeeper.Sealed{KeyID: "1", Ciphertext: []byte{1}}, adAccessA)
		c.fail(err, tokenkeeper.CodeInternal, "no keyset")
		if k.PrimaryKeyID() != "" || k.KeyIDs() != nil {
			t.Errorf("nil Keyset: PrimaryKeyID %q, KeyIDs %q; want none", k.PrimaryKeyID(), k.KeyIDs())
		}
	})
}

func TestKeyset_Open(t *testing.T) {
	c := newChecker(t)
	k := c.parse(c.generate())
	other := c.parse(c.generate())
	s, err := k.Seal([]byte(plaintext), adAccessA)
	c.ok(err)

	flip := func(i int) tokenkeeper.Sealed {
		ct := bytes.Clone(s.Ciphertext)
		ct[i] ^= 0x01
		return tokenkeeper.Sealed{KeyID: s.KeyID, Ciphertext: ct}
	}
	tests := []struct {
		name   string
		keyset *seal.Keyset
		sealed tokenkeeper.Sealed
		ad     []byte
		want   string
	}{
		{"ErrOtherConnection", k, s, adAccessB, "wrong associated data"},
		{"ErrOtherField", k, s, adRefreshA, "wrong associated data"},
		{"ErrNoAssociatedData", k, s, nil, "wrong associated data"},
		{"ErrTamperedBody", k, flip(len(s.Ciphertext) / 2), adAccessA, "altered"},
		{"ErrTamperedTag", k, flip(len(s.Ciphertext) - 1), adAccessA, "altered"},
		{"ErrTamperedPrefix", k, flip(4), adAccessA, "but its ciphertext is under key"},
		{"ErrTamperedKeyID", k, tokenkeeper.Sealed{KeyID: "7", Ciphertext: s.Ciphertext}, adAccessA, "names key \"7\""},
		{"ErrTruncated", k, tokenkeeper.Sealed{KeyID: s.KeyID, Ciphertext: s.Ciphertext[:3]}, adAccessA, "no Tink key prefix"},
		{"ErrZero", k, tokenkeeper.Sealed{}, adAccessA, "no ciphertext"},
		{"ErrUnknownKey", other, s, adAccessA,
			"sealed with key " + s.KeyID + ", which this keyset does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.sub(t)
			got, err := tt.keyset.Open(tt.sealed, tt.ad)
			c.fail(err, tokenkeeper.CodeInternal, tt.want)
			if got != nil {
				t.Errorf("Open returned %d bytes with its error", len(got))
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		got, err := k.Open(s, adAccessA)
		c.sub(t).ok(err)
		if string(got) != plaintext {
			t.Error("Open did not return the plaintext")
		}
	})
}

func TestKeyset_KeyIDs(t *testing.T) {
	c := newChecker(t)
	data := c.generate()
	k := c.parse(data)
	if diff := cmp.Diff([]string{k.PrimaryKeyID()}, k.KeyIDs()); diff != "" {
		t.Errorf("KeyIDs of a new keyset (-want +got):\n%s", diff)
	}
	ids := k.KeyIDs()
	ids[0] = "changed"
	if k.KeyIDs()[0] == "changed" {
		t.Error("KeyIDs shares its slice with the Keyset")
	}
}

func BenchmarkKeyset_Seal(b *testing.B) {
	k, token := benchKeyset(b)
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		if _, err := k.Seal(token, adAccessA); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyset_Open(b *testing.B) {
	k, token := benchKeyset(b)
	s, err := k.Seal(token, adAccessA)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		if _, err := k.Open(s, adAccessA); err != nil {
			b.Fatal(err)
		}
	}
}

// benchKeyset returns a keyset and a 64-byte token.
func benchKeyset(b *testing.B) (*seal.Keyset, []byte) {
	b.Helper()
	data, err := seal.Generate()
	if err != nil {
		b.Fatal(err)
	}
	k, err := seal.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	return k, bytes.Repeat([]byte("t"), 64)
}
