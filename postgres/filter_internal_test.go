package postgres

import (
	"testing"
	"unicode/utf8"
)

// TestPrefixEnd: the upper bound of an IDPrefix range is valid UTF-8 (the
// server refuses anything else) and the least string above every string
// with the prefix.
func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct {
		prefix, want string
		ok           bool
	}{
		{"a", "b", true},
		{"ab", "ac", true},
		{"a\x7f", "a\u0080", true},       // one byte becomes two
		{"caf\u00e9", "caf\u00ea", true}, // é
		{"\u07ff", "\u0800", true},
		{"x\ud7ff", "x\ue000", true}, // over the surrogates
		{"\uffff", "\U00010000", true},
		{"a\U0010ffff", "b", true},
		{"\U0010ffff\U0010ffff", "", false},
	} {
		got, ok := prefixEnd(tt.prefix)
		if got != tt.want || ok != tt.ok {
			t.Errorf("prefixEnd(%+q) = %+q, %v; want %+q, %v", tt.prefix, got, ok, tt.want, tt.ok)
		}
		if !utf8.ValidString(got) {
			t.Errorf("prefixEnd(%+q) = %+q, not valid UTF-8", tt.prefix, got)
		}
		if ok && got <= tt.prefix {
			t.Errorf("prefixEnd(%+q) = %+q, not above the prefix", tt.prefix, got)
		}
	}
}
