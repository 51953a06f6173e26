package seal

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/tokenkeeper/tokenkeeper"
)

// The functions of this file take a keyset's JSON and return a new one,
// leaving the input unchanged. They are safe for concurrent use, but two
// edits of the same file must not race: the caller owns the file.

// Generate returns a new keyset with one AES-256-GCM key (Tink's standard
// template, with Tink's prefix), as cleartext JSON for [Write]. It fails
// with [tokenkeeper.CodeInternal] only if the system's randomness fails.
func Generate() ([]byte, error) {
	m := keyset.NewManager()
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "generate keyset: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "generate keyset: %w", err)
	}
	return encode(m)
}

// AddKey adds a new AES-256-GCM key to the keyset data and returns the new
// keyset and the new key's id. The new key is not primary: distribute the
// keyset to every process first, then [Promote] it, so that no process meets
// a ciphertext under a key it does not hold yet.
//
// AddKey fails with [tokenkeeper.CodeInvalid] if data does not [Parse].
func AddKey(data []byte) (newData []byte, keyID string, err error) {
	k, err := Parse(data)
	if err != nil {
		return nil, "", err
	}
	m := keyset.NewManagerFromHandle(k.handle)
	id, err := m.Add(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, "", tokenkeeper.Errorf(tokenkeeper.CodeInternal, "add key: %w", err)
	}
	newData, err = encode(m)
	if err != nil {
		return nil, "", err
	}
	return newData, formatID(id), nil
}

// Promote makes the key keyID primary, so that Seal uses it from then on.
// Promote a key only once every process holds it (see [AddKey]). Promoting
// the primary key changes nothing.
//
// Promote fails with [tokenkeeper.CodeInvalid] if data does not [Parse] or
// keyID is not a key id, and with [tokenkeeper.CodeNotFound] if the keyset
// holds no enabled key keyID.
func Promote(data []byte, keyID string) ([]byte, error) {
	k, id, err := parseWithID(data, keyID)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(k.ids, id) {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "promote key %s: the keyset holds no enabled key %s", keyID, keyID)
	}
	m := keyset.NewManagerFromHandle(k.handle)
	if err := m.SetPrimary(id); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "promote key %s: %w", keyID, err)
	}
	return encode(m)
}

// Rotate is [AddKey] followed by [Promote]: the new key seals at once. Use it
// only where one process uses the keyset; several processes need the two
// phases. It fails like AddKey.
func Rotate(data []byte) (newData []byte, keyID string, err error) {
	added, keyID, err := AddKey(data)
	if err != nil {
		return nil, "", err
	}
	newData, err = Promote(added, keyID)
	if err != nil {
		return nil, "", err
	}
	return newData, keyID, nil
}

// Remove deletes the retired key keyID from the keyset. Values still sealed
// under it no longer open, so remove a key only after re-sealing every value
// under the primary key.
//
// Remove fails with [tokenkeeper.CodeInvalid] if data does not [Parse],
// keyID is not a key id, or keyID is the primary key (promote another key
// first), and with [tokenkeeper.CodeNotFound] if the keyset has no key keyID.
func Remove(data []byte, keyID string) ([]byte, error) {
	k, id, err := parseWithID(data, keyID)
	if err != nil {
		return nil, err
	}
	if id == k.primary {
		return nil, invalid("remove key %s: it is the primary key; promote another key first", keyID)
	}
	m := keyset.NewManagerFromHandle(k.handle)
	if err := m.Delete(id); err != nil {
		// The primary key was ruled out above, so the key is missing.
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "remove key %s: the keyset has no such key", keyID)
	}
	return encode(m)
}

// parseWithID parses data and keyID.
func parseWithID(data []byte, keyID string) (*Keyset, uint32, error) {
	k, err := Parse(data)
	if err != nil {
		return nil, 0, err
	}
	id, err := strconv.ParseUint(keyID, 10, 32)
	if err != nil {
		return nil, 0, invalid("key id %q is not a Tink key id (a decimal number)", keyID)
	}
	return k, uint32(id), nil
}

// encode writes the keyset of m as cleartext JSON (see Parse for why
// cleartext), and checks that the result parses.
func encode(m *keyset.Manager) ([]byte, error) {
	h, err := m.Handle()
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "encode keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "encode keyset: %w", err)
	}
	if _, err := Parse(buf.Bytes()); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "encode keyset: the result does not parse: %w", err)
	}
	return buf.Bytes(), nil
}
