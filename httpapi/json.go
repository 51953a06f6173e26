package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
)

// writeJSON writes v as the response, with status. Encoding our own types
// cannot fail; if it does, that is logged and the client gets a 500.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.ErrorContext(r.Context(), "http: encode response", "route", routeOf(r), "error", err)
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// readJSON decodes the request body, a single JSON object, into v. Every
// way a body can be wrong gets its own message: the wrong Content-Type
// (415), too large (413), empty, not UTF-8, not an object, malformed, a
// field of the wrong type or unknown, trailing data (400).
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := jsonContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// readOptionalJSON is readJSON for a route whose body may be left out: no
// body, or an empty one, leaves v as it is, whatever the Content-Type
// (OpenAPI's optional requestBody). A body with anything in it, even
// whitespace, must follow readJSON's rules.
func (s *Server) readOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	switch {
	case r.Body == nil || r.Body == http.NoBody: // Content-Length: 0, or none
		return nil
	case r.ContentLength > 0: // known not empty: refuse the wrong type before reading, as readJSON does
		return s.readJSON(w, r, v)
	}
	body, err := s.readBody(w, r) // chunked: empty or not, only reading tells
	if err != nil || len(body) == 0 {
		return err
	}
	if err := jsonContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	return decodeJSON(body, v)
}

// readBody reads the request body, up to Config.MaxBodyBytes (413 past it).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, wireErrorf(CodeTooLarge, "the request body exceeds %d bytes", tooLarge.Limit)
		}
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "the request body could not be read")
	}
	return body, nil
}

// jsonContentType accepts application/json, with or without parameters.
func jsonContentType(ct string) error {
	if ct == "" {
		return wireErrorf(CodeUnsupportedMediaType, "the request body needs Content-Type: application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return wireErrorf(CodeUnsupportedMediaType, "the Content-Type must be application/json")
	}
	return nil
}

// decodeJSON decodes body, which must hold exactly one JSON object, into v,
// refusing fields v does not have.
func decodeJSON(body []byte, v any) error {
	invalid := func(format string, args ...any) error {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, format, args...)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return invalid("the request body is empty; want a JSON object")
	case !utf8.Valid(body):
		return invalid("the request body is not valid UTF-8")
	case trimmed[0] != '{':
		return invalid("the request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%s", jsonProblem(err, dec))
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("the request body has data after the JSON object, at byte %d", dec.InputOffset())
	}
	return nil
}

// jsonProblem says what was wrong with a body that did not decode, in terms
// of the JSON, never of Go types.
func jsonProblem(err error, dec *json.Decoder) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("the request body is malformed JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is truncated JSON"
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("a value must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	// DisallowUnknownFields reports `json: unknown field "x"` with no type
	// to match on.
	if msg := err.Error(); len(msg) > len(unknownFieldPrefix) && msg[:len(unknownFieldPrefix)] == unknownFieldPrefix {
		return "unknown field " + msg[len(unknownFieldPrefix):]
	}
	return fmt.Sprintf("the request body is not valid at byte %d", dec.InputOffset())
}

const unknownFieldPrefix = "json: unknown field "

// jsonKind names the JSON type that decodes into a Go kind.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "another type"
}
