package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenkeeper/tokenkeeper"
)

// HTTP-layer codes. On the wire they are appended to tokenkeeper's closed
// list of codes ([tokenkeeper.Codes]); [Client] reads each as the nearest
// root code, [tokenkeeper.CodeInvalid].
const (
	// CodeTooLarge: the request body exceeds Config.MaxBodyBytes. 413.
	CodeTooLarge tokenkeeper.Code = "too_large"
	// CodeMethodNotAllowed: the path is served, but not for this method.
	// 405, with an Allow header.
	CodeMethodNotAllowed tokenkeeper.Code = "method_not_allowed"
	// CodeUnsupportedMediaType: a JSON body came without Content-Type
	// application/json. 415.
	CodeUnsupportedMediaType tokenkeeper.Code = "unsupported_media_type"
)

// statuses is the one table from codes to HTTP statuses.
var statuses = map[tokenkeeper.Code]int{
	tokenkeeper.CodeNotFound:          http.StatusNotFound,
	tokenkeeper.CodeInvalid:           http.StatusBadRequest,
	tokenkeeper.CodeConflict:          http.StatusConflict,
	tokenkeeper.CodeUnauthorized:      http.StatusUnauthorized,
	tokenkeeper.CodeForbidden:         http.StatusForbidden,
	tokenkeeper.CodeInternal:          http.StatusInternalServerError,
	tokenkeeper.CodeReconnectRequired: http.StatusConflict,
	tokenkeeper.CodeUnavailable:       http.StatusServiceUnavailable,
	CodeTooLarge:                      http.StatusRequestEntityTooLarge,
	CodeMethodNotAllowed:              http.StatusMethodNotAllowed,
	CodeUnsupportedMediaType:          http.StatusUnsupportedMediaType,
}

// Codes returns every code the API sends in an error body: tokenkeeper's
// closed list, then the HTTP-layer codes. The slice is new on each call.
func Codes() []tokenkeeper.Code {
	return append(tokenkeeper.Codes(), CodeTooLarge, CodeMethodNotAllowed, CodeUnsupportedMediaType)
}

// Status returns the HTTP status the API answers code with: 500 for a code
// not in [Codes].
func Status(code tokenkeeper.Code) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// RetryAfter is the Retry-After, in seconds, sent with every 503: a hint,
// since the server cannot know when the provider or the store recovers.
const RetryAfter = 5

// ErrorBody is the JSON body of every error response:
// {"error": {"code", "message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong. Code is one of [Codes]; Message is human
// text, safe to show, and never holds a token or a key.
type ErrorDetail struct {
	Code    tokenkeeper.Code `json:"code"`
	Message string           `json:"message"`
}

// wireError carries an HTTP-layer code, which tokenkeeper.Error cannot.
type wireError struct {
	code tokenkeeper.Code
	msg  string
}

func (e *wireError) Error() string { return e.msg }

func wireErrorf(code tokenkeeper.Code, format string, args ...any) error {
	return &wireError{code: code, msg: fmt.Sprintf(format, args...)}
}

// classify returns the wire code and message of err. A cancelled or timed
// out request context reads as unavailable.
func classify(err error) (tokenkeeper.Code, string) {
	var we *wireError
	if errors.As(err, &we) {
		return we.code, we.msg
	}
	var te *tokenkeeper.Error
	if !errors.As(err, &te) && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return tokenkeeper.CodeUnavailable, "the request was cancelled or timed out"
	}
	return tokenkeeper.ErrorCode(err), tokenkeeper.ErrorMessage(err)
}

// fail writes err as a JSON error response. An internal error's cause is
// logged here, once; users see "internal error".
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := classify(err)
	status := Status(code)
	switch code {
	case tokenkeeper.CodeInternal:
		s.log.ErrorContext(r.Context(), "http: internal error", "method", r.Method, "route", routeOf(r), "error", err)
		msg = "internal error"
	case tokenkeeper.CodeUnavailable:
		w.Header().Set("Retry-After", fmt.Sprint(RetryAfter))
	case tokenkeeper.CodeUnauthorized:
		if w.Header().Get("WWW-Authenticate") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokenkeeper"`)
		}
	}
	s.writeJSON(w, r, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// routeOf returns the matched pattern of r for logs, never its path.
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}
