package tokenkeeper

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CheckStoredText returns a [CodeInvalid] error naming field unless v can
// be stored as text under the [Store] contract: valid UTF-8 without NUL
// bytes (PostgreSQL's text cannot keep a NUL, and SQLite's JSON would
// replace invalid bytes, so neither store could hand back what it was
// given). Stores call it before every write, so that both refuse the same
// text with the same message.
func CheckStoredText(field, v string) error {
	switch {
	case !utf8.ValidString(v):
		return &Error{Code: CodeInvalid, Message: field + " is not valid UTF-8"}
	case strings.IndexByte(v, 0) >= 0:
		return &Error{Code: CodeInvalid, Message: field + " holds a NUL byte (U+0000), which a store cannot keep as text"}
	}
	return nil
}

// CheckText returns a [CodeInvalid] error naming the first text field of r
// (but the Lease, which writes ignore) that [CheckStoredText] refuses.
func (r *Record) CheckText() error {
	for _, f := range []struct{ name, v string }{
		{"ID", string(r.ID)},
		{"Provider", r.Provider},
		{"Subject", r.Subject},
		{"State", string(r.State)},
		{"LastError", r.LastError},
		{"Tokens.AccessToken.KeyID", r.Tokens.AccessToken.KeyID},
		{"Tokens.RefreshToken.KeyID", r.Tokens.RefreshToken.KeyID},
		{"Tokens.Scope", r.Tokens.Scope},
		{"Pending.Owner", r.Pending.Owner},
	} {
		if err := CheckStoredText(f.name, f.v); err != nil {
			return err
		}
	}
	for i, v := range r.Scopes {
		if err := CheckStoredText(fmt.Sprintf("Scopes[%d]", i), v); err != nil {
			return err
		}
	}
	for k, v := range r.Metadata {
		if err := CheckStoredText(fmt.Sprintf("the Metadata key %q", k), k); err != nil {
			return err
		}
		if err := CheckStoredText(fmt.Sprintf("Metadata[%q]", k), v); err != nil {
			return err
		}
	}
	return nil
}

// Validate returns a [CodeInvalid] error if e cannot be appended: a text
// field [CheckStoredText] refuses, or no Actor or Action.
func (e *AuditEntry) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"Actor", e.Actor},
		{"Action", e.Action},
		{"ConnectionID", string(e.ConnectionID)},
		{"Detail", e.Detail},
	} {
		if err := CheckStoredText(f.name, f.v); err != nil {
			return err
		}
	}
	switch {
	case e.Actor == "":
		return &Error{Code: CodeInvalid, Message: "the audit entry has no Actor"}
	case e.Action == "":
		return &Error{Code: CodeInvalid, Message: "the audit entry has no Action"}
	}
	return nil
}
