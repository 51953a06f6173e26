package seal_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

func TestGenerate(t *testing.T) {
	c := newChecker(t)
	a, b := c.parse(c.generate()), c.parse(c.generate())
	if len(a.KeyIDs()) != 1 {
		t.Errorf("KeyIDs = %q, want one key", a.KeyIDs())
	}
	s, err := a.Seal([]byte(plaintext), adAccessA)
	c.ok(err)
	// Random key ids may collide (one in 2^32); the key must differ anyway.
	_, err = b.Open(tokenkeeper.Sealed{KeyID: s.KeyID, Ciphertext: s.Ciphertext}, adAccessA)
	if err == nil {
		t.Error("a value sealed under one new keyset opens under another")
	}
	c.noLeak(err)
}

// rotation is a value sealed before a rotation, and the keysets around it.
type rotation struct {
	c      *checker
	data   []byte
	old    *seal.Keyset
	sealed tokenkeeper.Sealed
}

func newRotation(t *testing.T) *rotation {
	c := newChecker(t)
	r := &rotation{c: c, data: c.generate()}
	r.old = c.parse(r.data)
	var err error
	r.sealed, err = r.old.Seal([]byte(plaintext), adRefreshA)
	c.ok(err)
	return r
}

// sub returns r for the subtest t.
func (r *rotation) sub(t *testing.T) *rotation {
	s := *r
	s.c = r.c.sub(t)
	return &s
}

// opens checks that the value sealed before the rotation opens under k.
func (r *rotation) opens(k *seal.Keyset) {
	r.c.t.Helper()
	got, err := k.Open(r.sealed, adRefreshA)
	r.c.ok(err)
	if string(got) != plaintext {
		r.c.t.Error("the value sealed before the rotation opens to something else")
	}
}

// sealsWith checks that k seals under keyID.
func (r *rotation) sealsWith(k *seal.Keyset, keyID string) {
	r.c.t.Helper()
	s, err := k.Seal([]byte(plaintext), adRefreshA)
	r.c.ok(err)
	if s.KeyID != keyID || k.PrimaryKeyID() != keyID {
		r.c.t.Errorf("sealed under key %q (PrimaryKeyID %q), want %q", s.KeyID, k.PrimaryKeyID(), keyID)
	}
}

func TestAddKey(t *testing.T) {
	r := newRotation(t)
	data, id, err := seal.AddKey(r.data)
	r.c.ok(err)
	k := r.c.parse(data)
	if diff := cmp.Diff([]string{r.old.PrimaryKeyID(), id}, k.KeyIDs()); diff != "" {
		t.Errorf("KeyIDs (-want +got):\n%s", diff)
	}
	r.sealsWith(k, r.old.PrimaryKeyID()) // not promoted yet
	r.opens(k)

	// A process still on the old keyset opens what the new one seals,
	// because AddKey did not promote.
	s, err := k.Seal([]byte(plaintext), adAccessA)
	r.c.ok(err)
	_, err = r.old.Open(s, adAccessA)
	r.c.ok(err)
}

func TestPromote(t *testing.T) {
	r := newRotation(t)
	added, id, err := seal.AddKey(r.data)
	r.c.ok(err)

	t.Run("OK", func(t *testing.T) {
		r := r.sub(t)
		data, err := seal.Promote(added, id)
		r.c.ok(err)
		k := r.c.parse(data)
		r.sealsWith(k, id)
		r.opens(k)
		if !slices.Contains(k.KeyIDs(), r.old.PrimaryKeyID()) {
			t.Errorf("KeyIDs %q lost the old key", k.KeyIDs())
		}
	})
	t.Run("Primary", func(t *testing.T) {
		r := r.sub(t)
		data, err := seal.Promote(r.data, r.old.PrimaryKeyID())
		r.c.ok(err)
		r.sealsWith(r.c.parse(data), r.old.PrimaryKeyID())
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := seal.Promote(added, "12345")
		r.c.sub(t).fail(err, tokenkeeper.CodeNotFound, "no enabled key 12345")
	})
	t.Run("ErrKeyID", func(t *testing.T) {
		_, err := seal.Promote(added, "key-1")
		r.c.sub(t).fail(err, tokenkeeper.CodeInvalid, `key id "key-1" is not a Tink key id`)
	})
	t.Run("ErrKeyset", func(t *testing.T) {
		_, err := seal.Promote([]byte("nope"), id)
		r.c.sub(t).fail(err, tokenkeeper.CodeInvalid, "not a cleartext Tink JSON keyset")
	})
}

func TestRotate(t *testing.T) {
	r := newRotation(t)
	data, id, err := seal.Rotate(r.data)
	r.c.ok(err)
	if id == r.old.PrimaryKeyID() {
		t.Fatal("Rotate kept the primary key id")
	}
	k := r.c.parse(data)
	r.sealsWith(k, id)
	r.opens(k)
}

func TestRemove(t *testing.T) {
	r := newRotation(t)
	rotated, id, err := seal.Rotate(r.data)
	r.c.ok(err)

	t.Run("OK", func(t *testing.T) {
		c := r.c.sub(t)
		data, err := seal.Remove(rotated, r.old.PrimaryKeyID())
		c.ok(err)
		k := c.parse(data)
		if diff := cmp.Diff([]string{id}, k.KeyIDs()); diff != "" {
			t.Errorf("KeyIDs (-want +got):\n%s", diff)
		}
		_, err = k.Open(r.sealed, adRefreshA)
		c.fail(err, tokenkeeper.CodeInternal,
			"sealed with key "+r.old.PrimaryKeyID()+", which this keyset does not hold")
	})
	t.Run("ErrPrimary", func(t *testing.T) {
		_, err := seal.Remove(rotated, id)
		r.c.sub(t).fail(err, tokenkeeper.CodeInvalid, "is the primary key")
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := seal.Remove(rotated, "12345")
		r.c.sub(t).fail(err, tokenkeeper.CodeNotFound, "no such key")
	})
}
