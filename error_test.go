package tokenkeeper_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

func TestCodes(t *testing.T) {
	want := []tokenkeeper.Code{
		"not_found", "invalid", "conflict", "unauthorized",
		"forbidden", "internal", "reconnect_required", "unavailable",
	}
	got := tokenkeeper.Codes()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Codes() mismatch (-want +got):\n%s", diff)
	}
	for _, c := range got {
		if !c.Valid() {
			t.Errorf("Code(%q).Valid() = false, want true", c)
		}
	}

	t.Run("ReturnsCopy", func(t *testing.T) {
		got[0] = "tampered"
		if c := tokenkeeper.Codes()[0]; c != tokenkeeper.CodeNotFound {
			t.Fatalf("Codes()[0] after modifying an earlier result = %q, want %q", c, tokenkeeper.CodeNotFound)
		}
	})
}

func TestCode_Valid(t *testing.T) {
	for _, c := range []tokenkeeper.Code{"", "tampered", "NOT_FOUND", "not_found "} {
		if c.Valid() {
			t.Errorf("Code(%q).Valid() = true, want false", c)
		}
	}
}

func TestError_Error(t *testing.T) {
	cause := errors.New("dial tcp: connection refused")
	tests := []struct {
		name string
		err  *tokenkeeper.Error
		want string
	}{
		{"Nil", nil, "internal error"},
		{"Zero", &tokenkeeper.Error{}, "internal error"},
		{"DefaultMessage", &tokenkeeper.Error{Code: tokenkeeper.CodeNotFound}, "not found"},
		{"InvalidCode", &tokenkeeper.Error{Code: "bogus"}, "internal error"},
		{"Message", &tokenkeeper.Error{Code: tokenkeeper.CodeConflict, Message: "connection exists"}, "connection exists"},
		{"MessageAndCause", &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Message: "provider down", Err: cause},
			"provider down: dial tcp: connection refused"},
		{"CauseOnly", &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Err: cause},
			"temporarily unavailable: dial tcp: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestError_Unwrap(t *testing.T) {
	inner := &tokenkeeper.Error{Code: tokenkeeper.CodeReconnectRequired, Err: io.ErrUnexpectedEOF}
	err := fmt.Errorf("refresh connection %s: %w", "c1", inner)

	var got *tokenkeeper.Error
	if !errors.As(err, &got) || got != inner {
		t.Fatalf("errors.As(%v) = %v, want the wrapped *Error", err, got)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true", err)
	}
	if u := (*tokenkeeper.Error)(nil).Unwrap(); u != nil {
		t.Errorf("nil *Error Unwrap() = %v, want nil", u)
	}
}

func TestErrorf(t *testing.T) {
	cause := errors.New("connection reset")
	other := errors.New("lease held")
	tests := []struct {
		name        string
		format      string
		args        []any
		wantMessage string
		wantError   string
		wantCauses  []error // each must satisfy errors.Is
		wantNoCause bool
	}{
		{"NoCause", "connection %s not found", []any{"c1"},
			"connection c1 not found", "connection c1 not found", nil, true},
		{"TrailingWrap", "refresh connection %s: %w", []any{"c1", cause},
			"refresh connection c1", "refresh connection c1: connection reset", []error{cause}, false},
		{"OnlyWrap", "%w", []any{cause},
			"", "internal error: connection reset", []error{cause}, false},
		{"LeadingWrap", "%w: while refreshing", []any{cause},
			"while refreshing", "while refreshing: connection reset", []error{cause}, false},
		{"TwoWraps", "refresh %w then %w", []any{cause, other},
			"refresh then", "refresh then: connection reset\nlease held", []error{cause, other}, false},
		{"IndexedWrap", "%[2]s: %[1]w", []any{cause, "op"},
			"op", "op: connection reset", []error{cause}, false},
		{"ErrorWithV", "op %v", []any{cause},
			"op connection reset", "op connection reset", nil, true},
		{"NilWrap", "op: %w", []any{nil},
			"op: %!w(<nil>)", "op: %!w(<nil>)", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tokenkeeper.Errorf(tokenkeeper.CodeInternal, tt.format, tt.args...)
			if e == nil {
				t.Fatal("Errorf returned nil")
			}
			if e.Code != tokenkeeper.CodeInternal {
				t.Errorf("Code = %q, want %q", e.Code, tokenkeeper.CodeInternal)
			}
			if e.Message != tt.wantMessage {
				t.Errorf("Message = %q, want %q", e.Message, tt.wantMessage)
			}
			if got := e.Error(); got != tt.wantError {
				t.Errorf("Error() = %q, want %q", got, tt.wantError)
			}
			if tt.wantNoCause && e.Err != nil {
				t.Errorf("Err = %v, want nil", e.Err)
			}
			for _, c := range tt.wantCauses {
				if !errors.Is(e, c) {
					t.Errorf("errors.Is(e, %v) = false, want true", c)
				}
			}
		})
	}

	t.Run("MatchesFmtErrorf", func(t *testing.T) {
		e := tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "refresh connection %s: %w", "c1", cause)
		want := fmt.Errorf("refresh connection %s: %w", "c1", cause).Error()
		if got := e.Error(); got != want {
			t.Errorf("Error() = %q, want fmt.Errorf text %q", got, want)
		}
	})
}

func TestErrorCode(t *testing.T) {
	notFound := &tokenkeeper.Error{Code: tokenkeeper.CodeNotFound}
	tests := []struct {
		name string
		err  error
		want tokenkeeper.Code
	}{
		{"Nil", nil, ""},
		{"Plain", errors.New("boom"), tokenkeeper.CodeInternal},
		{"Error", notFound, tokenkeeper.CodeNotFound},
		{"Wrapped", fmt.Errorf("get connection: %w", notFound), tokenkeeper.CodeNotFound},
		{"Errorf", tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "grant revoked"), tokenkeeper.CodeReconnectRequired},
		{"OuterWins", tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "op: %w", notFound), tokenkeeper.CodeUnavailable},
		{"InvalidCode", &tokenkeeper.Error{Code: "bogus"}, tokenkeeper.CodeInternal},
		{"ZeroCode", &tokenkeeper.Error{}, tokenkeeper.CodeInternal},
		{"TypedNil", fmt.Errorf("op: %w", (*tokenkeeper.Error)(nil)), tokenkeeper.CodeInternal},
		{"Joined", errors.Join(errors.New("x"), notFound), tokenkeeper.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenkeeper.ErrorCode(tt.err); got != tt.want {
				t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	cause := errors.New("pq: password authentication failed for user tk")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"Nil", nil, ""},
		{"Plain", cause, "internal error"},
		{"WrappedPlain", fmt.Errorf("open store: %w", cause), "internal error"},
		{"Message", &tokenkeeper.Error{Code: tokenkeeper.CodeConflict, Message: "connection exists", Err: cause}, "connection exists"},
		{"DefaultMessage", &tokenkeeper.Error{Code: tokenkeeper.CodeReconnectRequired, Err: cause}, "reconnect required"},
		{"WrappedError", fmt.Errorf("op: %w", &tokenkeeper.Error{Code: tokenkeeper.CodeNotFound}), "not found"},
		{"ErrorfHidesCause", tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "refresh connection %s: %w", "c1", cause), "refresh connection c1"},
		{"TypedNil", fmt.Errorf("op: %w", (*tokenkeeper.Error)(nil)), "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenkeeper.ErrorMessage(tt.err); got != tt.want {
				t.Errorf("ErrorMessage(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
