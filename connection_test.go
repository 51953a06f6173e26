package tokenkeeper_test

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

func TestConnectionID_Validate(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "customer-42", "tenant:7@eu.west_1", "...", ".a", strings.Repeat("x", 128)} {
		if err := tokenkeeper.ConnectionID(ok).Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a b", "a/b", "a%2F", "é", "a\x00", strings.Repeat("x", 129)} {
		err := tokenkeeper.ConnectionID(bad).Validate()
		if tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
			t.Errorf("Validate(%q) = %v, want an invalid error", bad, err)
		}
	}
}
