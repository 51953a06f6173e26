package emulator

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxFormBytes bounds a token or introspection request body. Real requests are a few
// hundred bytes.
const maxFormBytes = 16 << 10

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func errInvalidRequest(format string, args ...any) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}

// writeJSON writes v with the no-store headers that RFC 6749 §5.1 requires of every token
// endpoint response, which are harmless elsewhere.
// It returns the error of writing the body, if any.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, err *oauthError) error {
	if err.status == http.StatusUnauthorized {
		// RFC 6749 §5.2: a failed HTTP Basic authentication must carry the challenge.
		w.Header().Set("WWW-Authenticate", `Basic realm="pleo-emulator", charset="UTF-8"`)
	}
	return writeJSON(w, err.status, map[string]string{"error": err.code, "error_description": err.desc})
}

// readForm reads an application/x-www-form-urlencoded POST body strictly: a bounded size,
// the right media type, valid escapes, and no parameter given twice (RFC 6749 §3.2).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &oauthError{http.StatusMethodNotAllowed, "invalid_request", "the method must be POST"}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errInvalidRequest("the content type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errInvalidRequest("the request body is larger than %d bytes", maxFormBytes)
		}
		return nil, errInvalidRequest("the request body could not be read")
	}
	return parseStrictForm(string(body))
}

// parseStrictForm parses a form-encoded string, refusing malformed escapes and repeated
// parameters.
func parseStrictForm(raw string) (url.Values, *oauthError) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errInvalidRequest("the form is malformed")
	}
	var repeated []string
	for k, vals := range v {
		if len(vals) > 1 {
			repeated = append(repeated, k)
		}
	}
	if len(repeated) > 0 {
		sort.Strings(repeated)
		return nil, errInvalidRequest("parameter %q is repeated", repeated[0])
	}
	dropEmpty(v)
	return v, nil
}

// dropEmpty removes parameters sent without a value: RFC 6749 §3.1 and §3.2 say they
// must be treated as if they were omitted.
func dropEmpty(v url.Values) {
	for k, vals := range v {
		if len(vals) == 1 && vals[0] == "" {
			delete(v, k)
		}
	}
}

// parseBasic decodes an HTTP Basic Authorization header whose user and password were
// form-encoded before base64 (RFC 6749 §2.3.1). ok is false when the header is absent or
// another scheme; err is set when it is Basic but malformed.
func parseBasic(header string) (id, secret string, ok bool, err error) {
	scheme, cred, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil
	}
	raw, decErr := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if decErr != nil {
		return "", "", true, errors.New("the Basic credentials are not valid base64")
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", true, errors.New("the Basic credentials have no colon")
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", true, errors.New("the Basic user is not form-encoded")
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", true, errors.New("the Basic password is not form-encoded")
	}
	if id == "" {
		return "", "", true, errors.New("the Basic user is empty")
	}
	return id, secret, true, nil
}

func scopeList(s string) []string {
	fields := strings.Fields(s)
	sort.Strings(fields)
	out := fields[:0]
	for i, f := range fields {
		if i == 0 || f != fields[i-1] {
			out = append(out, f)
		}
	}
	return out
}

func subsetOf(sub, set []string) (missing string, ok bool) {
	for _, s := range sub {
		found := false
		for _, t := range set {
			if s == t {
				found = true
				break
			}
		}
		if !found {
			return s, false
		}
	}
	return "", true
}

func itoa(n int) string { return strconv.Itoa(n) }

func strconvQuote(s string) string { return strconv.Quote(s) }
