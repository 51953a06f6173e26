package tokenkeeper

import (
	"crypto/subtle"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Redactions: what a Secret prints as, in every format, log and encoding.
const (
	// Redacted stands in for a Secret that holds a value.
	Redacted = "[REDACTED]"
	// RedactedEmpty stands in for the zero Secret. Saying "empty" reveals
	// nothing about a value and tells the reader that a token is missing.
	RedactedEmpty = "[EMPTY]"
)

// Secret holds a token, a client secret or a key, and keeps it out of
// everything that turns values into text: fmt (every verb and flag), errors,
// panics, log/slog, encoding/json, encoding/xml and other TextMarshaler
// users all see [Redacted] or, for the zero Secret, [RedactedEmpty].
// [Secret.Reveal] is the one way to read the value.
//
// The value sits behind a function rather than in a string field because
// fmt prints the unexported fields of a struct by reflection: a Secret held
// in an unexported field would otherwise print in full with %v. A func field
// prints as an address, and it also makes Secret not comparable, so == fails
// to compile; use [Secret.Equal], which runs in constant time.
//
// A Secret does not decode. Decoding into one ([Secret.UnmarshalJSON],
// [Secret.UnmarshalText]) fails, because a value that encodes as [Redacted]
// must not quietly come back as the literal "[REDACTED]". Decode into a
// string at the edge and call [NewSecret].
//
// The zero Secret is empty and equals NewSecret(""). A Secret is immutable
// and safe for concurrent use.
type Secret struct {
	reveal func() string
}

// Compile-time checks that no text path bypasses the redaction.
var (
	_ fmt.Stringer             = Secret{}
	_ fmt.GoStringer           = Secret{}
	_ fmt.Formatter            = Secret{}
	_ slog.LogValuer           = Secret{}
	_ json.Marshaler           = Secret{}
	_ encoding.TextMarshaler   = Secret{}
	_ json.Unmarshaler         = (*Secret)(nil)
	_ encoding.TextUnmarshaler = (*Secret)(nil)
)

// NewSecret returns a Secret holding s. NewSecret("") returns the zero
// Secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{reveal: func() string { return s }}
}

// Reveal returns the value. It is the only way to read it: call it at the
// last moment (building the HTTP request, sealing for storage) and never
// pass its result to a logger or an error. The zero Secret reveals "".
func (s Secret) Reveal() string {
	if s.reveal == nil {
		return ""
	}
	return s.reveal()
}

// IsZero reports whether s holds the empty string.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// Equal reports whether s and o hold the same value. The comparison takes
// time that depends on the lengths of the values but not on their contents
// (crypto/subtle), so it does not leak where two tokens differ. go-cmp uses
// it too.
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

// String returns [Redacted], or [RedactedEmpty] for the zero Secret.
func (s Secret) String() string {
	if s.IsZero() {
		return RedactedEmpty
	}
	return Redacted
}

// GoString returns the %#v form: "tokenkeeper.Secret{[REDACTED]}", or
// "tokenkeeper.Secret{}" for the zero Secret.
func (s Secret) GoString() string {
	if s.IsZero() {
		return "tokenkeeper.Secret{}"
	}
	return "tokenkeeper.Secret{" + Redacted + "}"
}

// Format prints the redaction for every verb, so %x, %X and %d cannot
// encode the value. %q quotes the redaction, %#v prints [Secret.GoString],
// and a width pads (left-justified with the - flag); precision is ignored
// so the redaction is never truncated into something that looks like data.
func (s Secret) Format(f fmt.State, verb rune) {
	text := s.String()
	switch {
	case verb == 'v' && f.Flag('#'):
		text = s.GoString()
	case verb == 'q':
		text = strconv.Quote(text)
	}
	if w, ok := f.Width(); ok && w > len(text) {
		pad := strings.Repeat(" ", w-len(text))
		if f.Flag('-') {
			text += pad
		} else {
			text = pad + text
		}
	}
	_, _ = f.Write([]byte(text))
}

// LogValue implements [slog.LogValuer]: loggers record the redaction.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes the redaction as a JSON string. It never fails.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText returns the redaction. It never fails.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalJSON always fails with [CodeInternal] (decoding into a Secret is
// a bug, not bad input) and leaves s unchanged; see [Secret] for why. The
// error does not quote the input.
func (s *Secret) UnmarshalJSON([]byte) error { return errNoDecode() }

// UnmarshalText fails like [Secret.UnmarshalJSON].
func (s *Secret) UnmarshalText([]byte) error { return errNoDecode() }

func errNoDecode() error {
	return &Error{Code: CodeInternal, Err: errors.New(
		"tokenkeeper.Secret does not decode: decode into a string and call NewSecret")}
}
