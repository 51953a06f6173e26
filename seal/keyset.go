package seal

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.Sealer = (*Keyset)(nil)

// Keyset is a parsed Tink keyset of AEAD keys. Its primary key seals; each of
// its enabled keys opens (disabled keys are ignored: they neither seal nor
// open). Make one with [Parse] or [Load].
//
// A Keyset is immutable and safe for concurrent use. A nil *Keyset holds no
// keys: Seal and Open fail with [tokenkeeper.CodeInternal], PrimaryKeyID
// returns "" and KeyIDs returns nil. To change keys, edit the keyset's JSON
// ([AddKey], [Promote], [Remove]), parse it again, and swap it into a
// [Keyring].
type Keyset struct {
	handle  *keyset.Handle
	aead    tink.AEAD
	primary uint32
	ids     []uint32 // enabled keys, in keyset order
}

// aeadTypeURLs are the AEAD key types Tink builds without a KMS. Generate and
// AddKey make only AES-GCM keys; the others are accepted so that a keyset
// edited with Tinkey still loads. The map is read-only.
var aeadTypeURLs = map[string]bool{
	"type.googleapis.com/google.crypto.tink.AesGcmKey":            true,
	"type.googleapis.com/google.crypto.tink.AesGcmSivKey":         true,
	"type.googleapis.com/google.crypto.tink.AesCtrHmacAeadKey":    true,
	"type.googleapis.com/google.crypto.tink.ChaCha20Poly1305Key":  true,
	"type.googleapis.com/google.crypto.tink.XChaCha20Poly1305Key": true,
	"type.googleapis.com/google.crypto.tink.XAesGcmKey":           true,
}

// Parse parses a cleartext keyset in Tink's JSON format. Every key must be an
// AEAD key with Tink's output prefix (so that a ciphertext names its key),
// and the primary key must be one of them.
//
// Parse fails with [tokenkeeper.CodeInvalid] for input that is not a JSON
// keyset (an encrypted keyset included), a keyset with no keys, a key of
// another type or prefix, or no enabled primary key. Its errors name key ids
// and types but never quote the input, which holds key material.
func Parse(data []byte) (*Keyset, error) {
	ks, err := keyset.NewJSONReader(bytes.NewReader(data)).Read()
	if err != nil {
		// The parser's error may quote the input: leave it out.
		return nil, invalid("parse keyset: not a cleartext Tink JSON keyset")
	}
	if len(ks.GetKey()) == 0 {
		return nil, invalid("parse keyset: the keyset holds no keys")
	}
	hasPrimary := false
	for _, k := range ks.GetKey() {
		if url := k.GetKeyData().GetTypeUrl(); !aeadTypeURLs[url] {
			return nil, invalid("parse keyset: key %d has type %q, which is not an AEAD key type", k.GetKeyId(), url)
		}
		if p := k.GetOutputPrefixType(); p != tinkpb.OutputPrefixType_TINK {
			return nil, invalid("parse keyset: key %d has output prefix %s; only TINK-prefixed keys name their key in the ciphertext", k.GetKeyId(), p)
		}
		if k.GetKeyId() == ks.GetPrimaryKeyId() && k.GetStatus() == tinkpb.KeyStatusType_ENABLED {
			hasPrimary = true
		}
	}
	if !hasPrimary {
		return nil, invalid("parse keyset: the keyset has no enabled primary key (primaryKeyId %d)", ks.GetPrimaryKeyId())
	}
	// Validate's errors name key ids and statuses only.
	if err := keyset.Validate(ks); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "parse keyset: %w", err)
	}
	// insecurecleartextkeyset, because the keyset is stored in cleartext on
	// purpose: the key file, or the environment variable, is the secret, and
	// there is no KMS to wrap it with.
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(data)))
	if err != nil {
		return nil, invalid("parse keyset: a key is malformed")
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, invalid("parse keyset: a key cannot be used as an AEAD")
	}
	k := &Keyset{handle: h, aead: a, primary: ks.GetPrimaryKeyId()}
	for _, key := range ks.GetKey() {
		if key.GetStatus() == tinkpb.KeyStatusType_ENABLED {
			k.ids = append(k.ids, key.GetKeyId())
		}
	}
	return k, nil
}

// Seal encrypts plaintext under the primary key, bound to associatedData
// (see [tokenkeeper.AssociatedData]). The result's KeyID is the primary key
// id in decimal. It fails with [tokenkeeper.CodeInternal] on a nil Keyset.
func (k *Keyset) Seal(plaintext, associatedData []byte) (tokenkeeper.Sealed, error) {
	if k == nil {
		return tokenkeeper.Sealed{}, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "seal: no keyset")
	}
	ct, err := k.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return tokenkeeper.Sealed{}, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "seal with key %d: %w", k.primary, err)
	}
	return tokenkeeper.Sealed{KeyID: formatID(k.primary), Ciphertext: ct}, nil
}

// Open decrypts s with the key its ciphertext names, which must be the key
// s.KeyID names. It fails with [tokenkeeper.CodeInternal] if s is zero, if
// the keyset does not hold that key (the message names the key id), or if s
// was sealed with other associated data or altered. Errors never include the
// plaintext.
func (k *Keyset) Open(s tokenkeeper.Sealed, associatedData []byte) ([]byte, error) {
	if k == nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "open: no keyset")
	}
	ct := s.Ciphertext
	if s.IsZero() {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "open: no ciphertext")
	}
	// Tink's prefix: version byte 1, then the key id, big-endian.
	if len(ct) < 5 || ct[0] != 1 {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "open: ciphertext has no Tink key prefix")
	}
	id := binary.BigEndian.Uint32(ct[1:5])
	if s.KeyID != formatID(id) {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal,
			"open: sealed value names key %q but its ciphertext is under key %d", s.KeyID, id)
	}
	if !slices.Contains(k.ids, id) {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "sealed with key %s, which this keyset does not hold", s.KeyID)
	}
	pt, err := k.aead.Decrypt(ct, associatedData)
	if err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal,
			"open value sealed with key %s (wrong associated data, or altered): %w", s.KeyID, err)
	}
	return pt, nil
}

// PrimaryKeyID returns the id of the key that Seal uses, in decimal, or ""
// for a nil Keyset.
func (k *Keyset) PrimaryKeyID() string {
	if k == nil {
		return ""
	}
	return formatID(k.primary)
}

// KeyIDs returns the ids of the keys that open, in decimal, in keyset order
// (a key added later comes later). The slice is new on each call. A nil
// Keyset returns nil.
func (k *Keyset) KeyIDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, len(k.ids))
	for i, id := range k.ids {
		ids[i] = formatID(id)
	}
	return ids
}

func formatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

func invalid(format string, args ...any) error {
	return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, format, args...)
}
