package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

func invalidf(format string, args ...any) error {
	return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, format, args...)
}

// queryOf returns the request's query parameters, each given at most once
// and each one of known: a typo fails rather than being ignored.
func queryOf(r *http.Request, known ...string) (map[string]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidf("the query string is malformed")
	}
	out := make(map[string]string, len(q))
	for name, values := range q {
		switch {
		case !slices.Contains(known, name):
			if len(known) == 0 {
				return nil, invalidf("unknown query parameter %q; this route takes none", name)
			}
			return nil, invalidf("unknown query parameter %q; known are %s", name, strings.Join(known, ", "))
		case len(values) > 1:
			return nil, invalidf("query parameter %q is given %d times", name, len(values))
		}
		out[name] = values[0]
	}
	return out, nil
}

// boolOf parses a boolean query parameter, "true" or "false" as OpenAPI
// spells them; absent is false.
func boolOf(q map[string]string, name string) (bool, error) {
	switch raw, ok := q[name]; {
	case !ok || raw == "false":
		return false, nil
	case raw == "true":
		return true, nil
	default:
		return false, invalidf("%s must be true or false, not %q", name, raw)
	}
}
