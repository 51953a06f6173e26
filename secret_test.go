package tokenkeeper_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper"
)

const raw = "s3cr3t-TOKEN-value"

// assertNoLeak fails if out holds raw or a common encoding of it.
func assertNoLeak(t *testing.T, what, out string) {
	t.Helper()
	for _, leak := range []string{
		"s3cr3t", "TOKEN-value",
		hex.EncodeToString([]byte(raw)), strings.ToUpper(hex.EncodeToString([]byte(raw))),
		base64.StdEncoding.EncodeToString([]byte(raw))[:16],
		strings.Trim(fmt.Sprint([]byte(raw)), "[]")[:16],
	} {
		if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
			t.Errorf("%s leaks the secret (%q): %q", what, leak, out)
		}
	}
}

// Holders of a Secret, as other packages will write them.
type (
	exported struct {
		ID    string
		Token tokenkeeper.Secret
		Ptr   *tokenkeeper.Secret
	}
	unexported struct {
		id    string
		token tokenkeeper.Secret
		ptr   *tokenkeeper.Secret
	}
)

func holders() []any {
	s := tokenkeeper.NewSecret(raw)
	return []any{
		s, &s, exported{"c1", s, &s}, &exported{"c1", s, &s}, unexported{"c1", s, &s}, &unexported{"c1", s, &s},
		[]tokenkeeper.Secret{s}, map[string]tokenkeeper.Secret{"k": s}, map[tokenkeeper.Code]any{"k": unexported{token: s}},
		[1]unexported{{token: s}}, struct{ Inner unexported }{unexported{token: s}},
	}
}

func TestSecret_Reveal(t *testing.T) {
	tests := []struct {
		s        tokenkeeper.Secret
		want     string
		wantZero bool
	}{
		{tokenkeeper.NewSecret(raw), raw, false}, {tokenkeeper.NewSecret(""), "", true}, {tokenkeeper.Secret{}, "", true},
	}
	for _, tt := range tests {
		if got := tt.s.Reveal(); got != tt.want || tt.s.IsZero() != tt.wantZero {
			t.Errorf("Reveal() = %q, IsZero() = %v; want %q, %v", got, tt.s.IsZero(), tt.want, tt.wantZero)
		}
	}
}

func TestSecret_Equal(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{raw, raw, true}, {"", "", true}, {raw, raw + "x", false}, {raw, "", false}, {"a", "b", false},
	}
	for _, tt := range tests {
		a, b := tokenkeeper.NewSecret(tt.a), tokenkeeper.NewSecret(tt.b)
		if got := a.Equal(b); got != tt.want {
			t.Errorf("NewSecret(%q).Equal(NewSecret(%q)) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	if !cmp.Equal(exported{Token: tokenkeeper.NewSecret(raw)}, exported{Token: tokenkeeper.NewSecret(raw)}) {
		t.Error("cmp.Equal does not use Secret.Equal")
	}
	diff := cmp.Diff(exported{Token: tokenkeeper.NewSecret(raw)}, exported{Token: tokenkeeper.NewSecret("other")})
	if diff == "" {
		t.Error("cmp.Diff found no difference between different secrets")
	}
	assertNoLeak(t, "cmp.Diff", diff)
}

func TestSecret_Format(t *testing.T) {
	s, zero := tokenkeeper.NewSecret(raw), tokenkeeper.Secret{}
	tests := []struct {
		format, want, wantZero string
	}{
		{"%v", "[REDACTED]", "[EMPTY]"},
		{"%+v", "[REDACTED]", "[EMPTY]"},
		{"%#v", "tokenkeeper.Secret{[REDACTED]}", "tokenkeeper.Secret{}"},
		{"%s", "[REDACTED]", "[EMPTY]"},
		{"%q", `"[REDACTED]"`, `"[EMPTY]"`},
		{"%+q", `"[REDACTED]"`, `"[EMPTY]"`},
		{"%#q", `"[REDACTED]"`, `"[EMPTY]"`},
		{"%x", "[REDACTED]", "[EMPTY]"},
		{"%X", "[REDACTED]", "[EMPTY]"},
		{"% x", "[REDACTED]", "[EMPTY]"},
		{"%#x", "[REDACTED]", "[EMPTY]"},
		{"%d", "[REDACTED]", "[EMPTY]"},
		{"%c", "[REDACTED]", "[EMPTY]"},
		{"%U", "[REDACTED]", "[EMPTY]"},
		{"%b", "[REDACTED]", "[EMPTY]"},
		{"%12v", "  [REDACTED]", "     [EMPTY]"},
		{"%-12s|", "[REDACTED]  |", "[EMPTY]     |"},
		{"%012x", "  [REDACTED]", "     [EMPTY]"},
		{"%.3s", "[REDACTED]", "[EMPTY]"},
		{"%5.1q", `"[REDACTED]"`, `"[EMPTY]"`},
		{"%T", "tokenkeeper.Secret", "tokenkeeper.Secret"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			got := fmt.Sprintf(tt.format, s)
			assertNoLeak(t, tt.format, got)
			if got != tt.want {
				t.Errorf("Sprintf(%q, secret) = %q, want %q", tt.format, got, tt.want)
			}
			if got := fmt.Sprintf(tt.format, zero); got != tt.wantZero {
				t.Errorf("Sprintf(%q, zero) = %q, want %q", tt.format, got, tt.wantZero)
			}
		})
	}
}

func TestSecret_FormatHolders(t *testing.T) {
	// %w outside fmt.Errorf is a bad verb: fmt skips Format and prints the
	// fields by reflection, which is why the value is not a string field.
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%8.2v", "%w"}
	for i, h := range holders() {
		for _, verb := range verbs {
			assertNoLeak(t, fmt.Sprintf("holder %d %T with %s", i, h, verb), fmt.Sprintf(verb, h))
		}
		assertNoLeak(t, fmt.Sprintf("holder %d %T with Sprint", i, h), fmt.Sprint(h)+fmt.Sprintln(h))
	}
	if got := fmt.Sprintf("%v", exported{"c1", tokenkeeper.NewSecret(raw), nil}); got != "{c1 [REDACTED] <nil>}" {
		t.Errorf("Sprintf(%%v, struct) = %q, want the redaction in place", got)
	}
}

func TestSecret_MarshalJSON(t *testing.T) {
	s := tokenkeeper.NewSecret(raw)
	v := struct {
		Token    tokenkeeper.Secret  `json:"token"`
		Ptr      *tokenkeeper.Secret `json:"ptr"`
		Nil      *tokenkeeper.Secret `json:"nil"`
		Empty    tokenkeeper.Secret  `json:"empty"`
		Omitted  tokenkeeper.Secret  `json:"omitted,omitzero"`
		Holder   exported            `json:"holder"`
		Internal unexported          `json:"internal"`
	}{Token: s, Ptr: &s, Holder: exported{"c1", s, &s}, Internal: unexported{"c1", s, &s}}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"token":"[REDACTED]","ptr":"[REDACTED]","nil":null,"empty":"[EMPTY]",` +
		`"holder":{"ID":"c1","Token":"[REDACTED]","Ptr":"[REDACTED]"},"internal":{}}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("json.Marshal mismatch (-want +got):\n%s", diff)
	}
	assertNoLeak(t, "json.Marshal", string(got))

	type holder struct{ Token tokenkeeper.Secret }
	x, err := xml.Marshal(holder{s})
	if err != nil {
		t.Fatal(err)
	}
	assertNoLeak(t, "xml.Marshal", string(x))
}

func TestSecret_Unmarshal(t *testing.T) {
	input := `{"Token":"` + raw + `"}`
	var v exported
	err := json.Unmarshal([]byte(input), &v)
	if err == nil {
		t.Fatal("json.Unmarshal into a Secret succeeded, want an error")
	}
	if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInternal {
		t.Errorf("ErrorCode = %q, want %q", code, tokenkeeper.CodeInternal)
	}
	assertNoLeak(t, "json.Unmarshal error", err.Error())
	if !v.Token.IsZero() {
		t.Error("json.Unmarshal set the Secret despite failing")
	}

	s := tokenkeeper.NewSecret("kept")
	if err := s.UnmarshalText([]byte(raw)); err == nil {
		t.Error("UnmarshalText succeeded, want an error")
	} else {
		assertNoLeak(t, "UnmarshalText error", err.Error())
	}
	if s.Reveal() != "kept" {
		t.Error("UnmarshalText changed the Secret")
	}
}

func TestSecret_LogValue(t *testing.T) {
	s := tokenkeeper.NewSecret(raw)
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"JSON": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"Text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(newHandler(&buf))
			log.Info("secret", "token", s, "ptr", &s)
			log.Info("any", slog.Any("token", s), slog.Any("holders", holders()))
			for i, h := range holders() {
				log.Info("holder", "i", i, "h", h)
			}
			log.LogAttrs(t.Context(), slog.LevelInfo, "attrs",
				slog.Attr{Key: "token", Value: slog.AnyValue(s)}, slog.Group("g", "token", s))
			log.With("token", s).WithGroup("g").Info("with", "token", s)
			log.Info("msg " + fmt.Sprint(s))

			out := buf.String()
			assertNoLeak(t, name+" handler", out)
			if !strings.Contains(out, "[REDACTED]") {
				t.Errorf("log output has no redaction marker:\n%s", out)
			}
		})
	}
}

func TestSecret_Errors(t *testing.T) {
	s := tokenkeeper.NewSecret(raw)
	errs := []error{
		errors.New(fmt.Sprint(s)),
		fmt.Errorf("refresh with %v: %w", s, errors.New("x")),
		fmt.Errorf("refresh %+v %#v %x", exported{Token: s}, unexported{token: s}, s),
		tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "bad token %v %q", s, s),
	}
	for _, err := range errs {
		assertNoLeak(t, "error", err.Error())
		assertNoLeak(t, "ErrorMessage", tokenkeeper.ErrorMessage(err))
	}
}

func TestSecret_Panic(t *testing.T) {
	s := tokenkeeper.NewSecret(raw)
	for i, v := range []any{s, &s, exported{Token: s}, unexported{token: s}} {
		r := func() (r any) {
			defer func() { r = recover() }()
			panic(v)
		}()
		if r == nil {
			t.Fatalf("panic %d: recovered nil", i)
		}
		assertNoLeak(t, fmt.Sprintf("recovered panic %d", i), fmt.Sprint(r)+fmt.Sprintf("%#v %+v", r, r))
	}
}
