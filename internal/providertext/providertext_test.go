package providertext_test

import (
	"testing"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper/internal/providertext"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"Empty", "", ""},
		{"Clean", "users:read expenses:write", "users:read expenses:write"},
		{"NUL", "users:read\x00x", "users:readx"},
		{"Controls", "a\x01b\x7fc\u0085d", "abcd"},
		{"WhiteSpace", "a\tb\nc\r\nd", "a b c  d"},
		{"InvalidUTF8", "users:read \xff\xfe x", "users:read \uFFFD\uFFFD x"},
		{"Surrogate", "a\xed\xa0\x80b", "a\uFFFD\uFFFD\uFFFDb"},
		{"Unicode", "zoë ✓", "zoë ✓"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := providertext.Clean(tc.in)
			if got != tc.want {
				t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Clean(%q) = %q: invalid UTF-8", tc.in, got)
			}
		})
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "users:read\x00x", "\xff", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := providertext.Clean(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Clean(%q) = %q: invalid UTF-8", s, got)
		}
		for _, r := range got {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) {
				t.Fatalf("Clean(%q) = %q: holds control %U", s, got, r)
			}
		}
		if again := providertext.Clean(got); again != got {
			t.Fatalf("Clean is not idempotent: %q then %q", got, again)
		}
	})
}
