// Package providertext cleans text that an OAuth provider sent before
// tokenkeeper stores it. A provider can send any bytes, and both stores
// refuse text holding NUL or invalid UTF-8 (CodeInvalid): a refreshed
// scope that held either would make the commit fail and lose the freshly
// rotated token pair.
package providertext

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s as valid UTF-8 with no control characters: each invalid
// byte becomes U+FFFD, ASCII white space (tab, line feed, vertical tab,
// form feed, carriage return) becomes a space, so that a space-separated
// list such as an RFC 6749 section 3.3 scope keeps its items apart, and
// every other control character (C0, including NUL; DEL; C1) is dropped.
// Clean is safe for concurrent use.
func Clean(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r':
			b.WriteByte(' ')
		case control(r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// clean reports whether Clean would return s unchanged.
func clean(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, control)
}

func control(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
