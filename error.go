package tokenkeeper

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Code classifies an [Error] for callers and for the HTTP layer, which maps
// each code to one status. The codes are a closed list that is only ever
// appended to: callers may switch over [Codes] exhaustively. The zero Code
// ("") is not valid; [ErrorCode] returns it only for a nil error.
type Code string

// The closed list of codes. Their string values are part of the wire format
// (the "code" field of the HTTP API's error body) and never change.
const (
	// CodeNotFound: the named thing does not exist.
	CodeNotFound Code = "not_found"
	// CodeInvalid: the request is malformed or breaks a rule; retrying the
	// same request cannot succeed.
	CodeInvalid Code = "invalid"
	// CodeConflict: the request clashes with the current state, such as a
	// duplicate or a stale version.
	CodeConflict Code = "conflict"
	// CodeUnauthorized: the caller did not prove who it is.
	CodeUnauthorized Code = "unauthorized"
	// CodeForbidden: the caller is known but may not do this.
	CodeForbidden Code = "forbidden"
	// CodeInternal: a bug or an unexpected failure. Anything that is not an
	// *Error counts as internal.
	CodeInternal Code = "internal"
	// CodeReconnectRequired: the grant is dead (the provider answered
	// invalid_grant, RFC 6749 section 5.2). All work on the authorisation
	// stops until the user consents again; retrying cannot help.
	CodeReconnectRequired Code = "reconnect_required"
	// CodeUnavailable: the provider, or the lease on the authorisation, is
	// busy or down. Retry later.
	CodeUnavailable Code = "unavailable"
)

// Codes returns every valid Code, in declaration order. The slice is new on
// each call, so the caller may modify it.
func Codes() []Code {
	return []Code{
		CodeNotFound, CodeInvalid, CodeConflict, CodeUnauthorized,
		CodeForbidden, CodeInternal, CodeReconnectRequired, CodeUnavailable,
	}
}

// Valid reports whether c is one of [Codes]. The zero Code is not valid.
func (c Code) Valid() bool {
	_, ok := defaultMessages[c]
	return ok
}

// defaultMessages is what users see for an Error with no Message. It is
// read-only.
var defaultMessages = map[Code]string{
	CodeNotFound:          "not found",
	CodeInvalid:           "invalid request",
	CodeConflict:          "conflict",
	CodeUnauthorized:      "unauthorized",
	CodeForbidden:         "forbidden",
	CodeInternal:          "internal error",
	CodeReconnectRequired: "reconnect required",
	CodeUnavailable:       "temporarily unavailable",
}

// Error is the one error type of tokenkeeper. Code says what kind of failure
// it is; Message is safe to show to a user; Err is the cause, kept for logs
// and for [errors.Is] and [errors.As] (for example an *oauth2.RetrieveError,
// so the RFC 6749 error code stays reachable).
//
// The zero Error is an internal error with no message and no cause. An
// Error whose Code is not [Code.Valid] counts as [CodeInternal]. Neither
// Message nor Err may hold a token: wrap tokens in a [Secret].
// Treat an Error as immutable once returned; it is then safe for concurrent
// use.
type Error struct {
	// Code classifies the error. Invalid codes, including "", read as
	// CodeInternal.
	Code Code
	// Message is for users. Empty means the default message of Code.
	Message string
	// Err is the cause, or nil. Users never see it.
	Err error
}

// Error returns the message (or the default message of the code) followed,
// if Err is not nil, by ": " and the text of Err. It is meant for logs; show
// users [ErrorMessage] instead. A nil *Error returns the default internal
// message.
func (e *Error) Error() string {
	if e == nil {
		return defaultMessages[CodeInternal]
	}
	msg := e.Message
	if msg == "" {
		msg = defaultMessages[e.code()]
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns Err, the cause. A nil *Error returns nil.
func (e *Error) Unwrap() error {
	if e == nil {
		return nil
	}
	return e.Err
}

// code returns the code of e, with invalid codes read as CodeInternal.
func (e *Error) code() Code {
	if e == nil || !e.Code.Valid() {
		return CodeInternal
	}
	return e.Code
}

// Errorf returns an *Error with the given code, formatting like
// [fmt.Errorf]. Causes wrapped with %w become Err and are left out of
// Message, because Message reaches users and causes must reach only logs:
//
//	Errorf(CodeUnavailable, "refresh connection %s: %w", id, err)
//
// has Message "refresh connection <id>" and Err err, so its Error() text is
// the one fmt.Errorf would produce. Each %w operand is cut from Message with
// one ": " or " " beside it; Error() matches fmt.Errorf exactly when a single
// %w ends the format, as the conventions ask. Several %w verbs make Err their
// [errors.Join]. Errors formatted with other verbs stay in Message, so keep
// them out of formats. Errorf never returns nil; an invalid code reads as
// CodeInternal.
func Errorf(code Code, format string, args ...any) *Error {
	full := fmt.Errorf(format, args...)
	causes := slices.DeleteFunc(unwrapped(full), func(err error) bool { return err == nil })
	switch len(causes) {
	case 0:
		return &Error{Code: code, Message: full.Error()}
	case 1:
		return &Error{Code: code, Message: uncaused(format, args), Err: causes[0]}
	default:
		return &Error{Code: code, Message: uncaused(format, args), Err: errors.Join(causes...)}
	}
}

// unwrapped returns the errors err wraps directly.
func unwrapped(err error) []error {
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return []error{u.Unwrap()}
	case interface{ Unwrap() []error }:
		return u.Unwrap()
	}
	return nil
}

// uncaused formats like fmt.Errorf but leaves out the operands of %w.
func uncaused(format string, args []any) string {
	// First pass: stand in for every error argument to learn, from what
	// fmt.Errorf wraps, which arguments %w consumed.
	probes := make([]any, len(args))
	for i, a := range args {
		probes[i] = a
		if _, ok := a.(error); ok {
			probes[i] = &operand{index: i}
		}
	}
	wrapped := make(map[int]bool)
	for _, err := range unwrapped(fmt.Errorf(format, probes...)) {
		if o, ok := err.(*operand); ok {
			wrapped[o.index] = true
		}
	}

	// Second pass: only the wrapped arguments are replaced, by a cut mark.
	marked := slices.Clone(args)
	for i := range wrapped {
		marked[i] = probes[i]
	}
	msg := fmt.Errorf(format, marked...).Error()
	for _, cut := range []string{": " + cutMark, " " + cutMark, cutMark + ": ", cutMark + " ", cutMark} {
		msg = strings.ReplaceAll(msg, cut, "")
	}
	return msg
}

// cutMark is what a wrapped operand prints as while Errorf builds Message.
// The NUL bytes keep it from colliding with real text.
const cutMark = "\x00tokenkeeper:cause\x00"

// operand stands in for the error argument at index while Errorf works out
// which arguments %w wraps. It prints as cutMark, for every verb.
type operand struct{ index int }

func (o *operand) Error() string                 { return cutMark }
func (o *operand) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(cutMark)) }

// ErrorCode returns the code of the first *Error in err's chain (see
// [errors.As]). It returns "" for a nil err, and [CodeInternal] when the
// chain holds no *Error or the *Error's code is not valid.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		return CodeInternal
	}
	return e.code()
}

// ErrorMessage returns the text that is safe to show a user for err: the
// Message of the first *Error in its chain, or the default message of its
// code when Message is empty. For a chain without an *Error it returns
// "internal error": the cause belongs in the log, not in front of the user.
// A nil err returns "".
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e != nil && e.Message != "" {
		return e.Message
	}
	return defaultMessages[ErrorCode(err)]
}
