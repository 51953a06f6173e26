package tokenkeeper

// Sealed is a ciphertext produced by a [Sealer], with the id of the key
// that sealed it. The zero Sealed stands for "no value" (a wiped token).
type Sealed struct {
	// KeyID names the key that sealed Ciphertext, so that a re-seal pass can
	// find what is not yet under the primary key.
	KeyID      string
	Ciphertext []byte
}

// IsZero reports whether s holds no ciphertext.
func (s Sealed) IsZero() bool { return len(s.Ciphertext) == 0 }

// Sealer seals values at rest with an AEAD. The associated data binds a
// ciphertext to where it belongs (a connection and a field), so that
// ciphertexts cannot be swapped between rows or fields.
//
// Implementations keep several keys: one primary key that seals, and older
// keys that still open. Implementations must be safe for concurrent use.
type Sealer interface {
	// Seal encrypts plaintext under the primary key, bound to
	// associatedData.
	Seal(plaintext, associatedData []byte) (Sealed, error)
	// Open decrypts s. It fails (with [CodeInternal]) if s was sealed with
	// other associated data, under a key the Sealer does not hold, or was
	// altered. Errors never include the plaintext.
	Open(s Sealed, associatedData []byte) ([]byte, error)
	// PrimaryKeyID is the KeyID that Seal produces now.
	PrimaryKeyID() string
}

// AssociatedData returns the associated data that binds a sealed value to
// the field of a connection (or of a connect session), for [Sealer]. The
// layout is versioned, and length-prefixed so that no two (kind, id, field)
// triples give the same bytes.
func AssociatedData(kind, id, field string) []byte {
	b := make([]byte, 0, 32+len(kind)+len(id)+len(field))
	b = append(b, "tokenkeeper/v1"...)
	for _, s := range [...]string{kind, id, field} {
		n := len(s)
		b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		b = append(b, s...)
	}
	return b
}

// Kinds of sealed owners for [AssociatedData].
const (
	SealKindConnection = "connection"
	SealKindSession    = "session"
)
