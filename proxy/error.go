package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/tokenkeeper/tokenkeeper"
)

// The upstream failures, wrapped in a [tokenkeeper.CodeUnavailable] error
// so that an [Proxy.Error] hook can tell them apart with [errors.Is].
var (
	// ErrUnreachable: the provider's API could not be reached, or broke the
	// connection before its response headers (502 Bad Gateway).
	ErrUnreachable = errors.New("proxy: the provider's API is unreachable")
	// ErrTimeout: the provider's API sent no response headers within
	// [Proxy.Timeout] (504 Gateway Timeout).
	ErrTimeout = errors.New("proxy: the provider's API did not answer in time")
)

// statuses maps each code to its HTTP status.
var statuses = map[tokenkeeper.Code]int{
	tokenkeeper.CodeNotFound:          http.StatusNotFound,
	tokenkeeper.CodeInvalid:           http.StatusBadRequest,
	tokenkeeper.CodeConflict:          http.StatusConflict,
	tokenkeeper.CodeUnauthorized:      http.StatusUnauthorized,
	tokenkeeper.CodeForbidden:         http.StatusForbidden,
	tokenkeeper.CodeInternal:          http.StatusInternalServerError,
	tokenkeeper.CodeReconnectRequired: http.StatusConflict,
	tokenkeeper.CodeUnavailable:       http.StatusServiceUnavailable,
}

// Status returns the HTTP status for err: 504 if it wraps [ErrTimeout],
// 502 if it wraps [ErrUnreachable], else the status of its
// [tokenkeeper.Code] (not_found 404, invalid 400, conflict 409,
// unauthorized 401, forbidden 403, internal 500, reconnect_required 409,
// unavailable 503). An error without a *tokenkeeper.Error is internal.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrUnreachable):
		return http.StatusBadGateway
	}
	if s, ok := statuses[tokenkeeper.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// WriteError is what a nil [Proxy.Error] means: it writes the JSON body
// {"error": {"code", "message"}} with [Status](err). The message is
// [tokenkeeper.ErrorMessage], never the cause. It is safe for concurrent
// use.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	var body struct {
		Error struct {
			Code    tokenkeeper.Code `json:"code"`
			Message string           `json:"message"`
		} `json:"error"`
	}
	body.Error.Code = tokenkeeper.ErrorCode(err)
	body.Error.Message = tokenkeeper.ErrorMessage(err)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(Status(err))
	_ = json.NewEncoder(w).Encode(body)
}

// classify turns an error from the round trip into a *tokenkeeper.Error:
// the transport's token errors keep their code; anything else is the
// upstream failing (or the caller leaving).
func classify(r *http.Request, err error) error {
	var te *tokenkeeper.Error
	switch {
	case errors.As(err, &te):
		return err
	case r.Context().Err() != nil:
		return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Message: "the request was cancelled", Err: err}
	}
	return &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable, Message: "the provider's API is unreachable", Err: errors.Join(ErrUnreachable, err)}
}

// fail logs err once and writes it with the Error hook.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string, err error) {
	level := slog.LevelInfo
	switch code := tokenkeeper.ErrorCode(err); {
	case code == tokenkeeper.CodeInternal:
		level = slog.LevelError
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		level = slog.LevelDebug // the caller left
	case code == tokenkeeper.CodeUnavailable || code == tokenkeeper.CodeInvalid:
		level = slog.LevelWarn
	}
	p.log.Log(r.Context(), level, "proxy: request failed", "connection", string(id), "method", r.Method,
		"path", path, "code", string(tokenkeeper.ErrorCode(err)), "status", Status(err), "err", err.Error())
	if p.Error != nil {
		p.Error(w, r, err)
		return
	}
	WriteError(w, r, err)
}
