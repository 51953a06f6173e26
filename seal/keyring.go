package seal

import (
	"slices"
	"sync/atomic"

	"github.com/tokenkeeper/tokenkeeper"
)

var _ tokenkeeper.Sealer = (*Keyring)(nil)

// Keyring holds the current [Keyset] of a long-running process and seals
// and opens with it. When the keyset changes ([AddKey], then [Promote]), the
// process parses the new keyset and swaps it in with Replace, while Seal and
// Open go on in other goroutines: each call uses the keyset that was current
// when it began.
//
// A Keyring is safe for concurrent use. The zero Keyring holds no keyset:
// Seal and Open fail with [tokenkeeper.CodeInternal] and PrimaryKeyID
// returns "" until Replace gives it one. A Keyring must not be copied after
// first use.
type Keyring struct {
	current atomic.Pointer[Keyset]
}

// NewKeyring returns a Keyring holding ks. A nil ks gives the zero Keyring.
func NewKeyring(ks *Keyset) *Keyring {
	r := &Keyring{}
	r.current.Store(ks)
	return r
}

// Current returns the keyset in use, or nil if there is none. A Keyset is
// immutable, so the caller may keep it.
func (r *Keyring) Current() *Keyset { return r.current.Load() }

// Replace makes ks the keyset in use, for the calls that begin after it
// returns. It refuses, with [tokenkeeper.CodeInvalid], a nil ks and a keyset
// that does not hold the current primary key: a value sealed a moment ago,
// perhaps by a call still running, must still open. It does not check the
// other keys of the current keyset; dropping them is [Remove]'s business,
// after a re-seal pass.
func (r *Keyring) Replace(ks *Keyset) error {
	if ks == nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "replace keyset: no keyset")
	}
	for {
		old := r.current.Load()
		if old != nil && !slices.Contains(ks.ids, old.primary) {
			return tokenkeeper.Errorf(tokenkeeper.CodeInvalid,
				"replace keyset: the new keyset does not hold the current primary key %d, so values sealed under it would not open", old.primary)
		}
		// Compare and swap, so that the check holds against the keyset
		// actually replaced, even under concurrent Replace calls.
		if r.current.CompareAndSwap(old, ks) {
			return nil
		}
	}
}

// Seal seals with the current keyset (see [Keyset.Seal]).
func (r *Keyring) Seal(plaintext, associatedData []byte) (tokenkeeper.Sealed, error) {
	return r.current.Load().Seal(plaintext, associatedData)
}

// Open opens with the current keyset (see [Keyset.Open]).
func (r *Keyring) Open(s tokenkeeper.Sealed, associatedData []byte) ([]byte, error) {
	return r.current.Load().Open(s, associatedData)
}

// PrimaryKeyID returns the primary key id of the current keyset, or "".
func (r *Keyring) PrimaryKeyID() string { return r.current.Load().PrimaryKeyID() }
