// Package oautherr keeps an *oauth2.RetrieveError in an error chain without
// its text. x/oauth2's RetrieveError.Error quotes the token endpoint's
// response body, which can hold a token (a 200 carrying an error code, or a
// non-JSON body), so tokenkeeper never lets that text reach a log or a
// message: the wrapper says the status and the RFC 6749 section 5.2 error
// code, and errors.As still finds the RetrieveError.
package oautherr

import (
	"errors"
	"fmt"

	"golang.org/x/oauth2"
)

// Error wraps a RetrieveError; its text holds the status and the error
// code only.
type Error struct{ RetrieveError *oauth2.RetrieveError }

// Error returns "token endpoint answered <status> [<code>]".
func (e *Error) Error() string {
	status := 0
	if e.RetrieveError.Response != nil {
		status = e.RetrieveError.Response.StatusCode
	}
	if e.RetrieveError.ErrorCode != "" {
		return fmt.Sprintf("token endpoint answered %d %s", status, e.RetrieveError.ErrorCode)
	}
	return fmt.Sprintf("token endpoint answered %d", status)
}

// Unwrap returns the RetrieveError.
func (e *Error) Unwrap() error { return e.RetrieveError }

// Redact returns err with every *oauth2.RetrieveError in it replaced by
// an [Error] around it, if err is one or wraps one directly; other errors
// are returned as they are. A nil err gives nil.
func Redact(err error) error {
	var re *oauth2.RetrieveError
	if err == nil || !errors.As(err, &re) {
		return err
	}
	return &Error{RetrieveError: re}
}
