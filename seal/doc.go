// Package seal seals tokens at rest with an AEAD (AES-256-GCM) under a Google
// Tink keyset, and implements [tokenkeeper.Sealer].
//
// A [Keyset] is an immutable, parsed keyset: one primary key seals, and every
// enabled key opens. Each ciphertext starts with Tink's 5-byte prefix, which
// names the key that sealed it, so Open finds the right key without trying
// them all; the same key id, in decimal, is [tokenkeeper.Sealed.KeyID], so a
// re-seal pass can find what is not yet under the primary key.
//
// Keyset files are Tink's JSON keyset format in cleartext. The file (or the
// environment variable holding it) is the secret, and [Load] refuses a file
// that group or others may read.
//
// # Rotation
//
// Several processes that share a database must never fail to open what
// another one sealed, so rotation has two phases:
//
//  1. [AddKey] adds a key that is not primary yet. Distribute the keyset to
//     every process, which swaps it in with [Keyring.Replace]. Every process
//     can now open under the new key, but none seals with it.
//  2. [Promote] makes the new key primary. Distribute again. Processes that
//     already run the promoted keyset seal under the new key, and those that
//     do not yet can open those ciphertexts, because they got the key in
//     phase 1.
//
// A single process may do both at once with [Rotate]. Once a re-seal pass has
// moved every record to the new primary key, [Remove] retires the old key;
// records still sealed under it then fail to open, with an error that names
// the key.
package seal
