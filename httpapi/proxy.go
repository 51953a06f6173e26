package httpapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// proxyRoute is the proxy's route label, in ServeMux pattern syntax.
const proxyRoute = "/v1/connections/{id}/proxy/{path...}"

// proxyPath splits an escaped request path of the proxy route into the
// connection id's segment (still escaped) and the rest after
// "/v1/connections/{id}/proxy", exactly as sent. ok is false for any other
// path.
func proxyPath(escaped string) (idSeg, rest string, ok bool) {
	after, ok := strings.CutPrefix(escaped, "/v1/connections/")
	if !ok {
		return "", "", false
	}
	idSeg, tail, ok := strings.Cut(after, "/")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutPrefix(tail, "proxy")
	if !ok || (rest != "" && rest[0] != '/') {
		return "", "", false
	}
	return idSeg, strings.TrimPrefix(rest, "/"), true
}

// serveProxy serves any method on /v1/connections/{id}/proxy/{path...} with
// the proxy scope. The proxy gets "/" + the rest of the path as sent, never
// cleaned or unescaped, and a copy of the request without the API key.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, idSeg, rest string) {
	if _, err := s.authenticate(w, r, tokenkeeper.ScopeProxy); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := proxyID(idSeg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := r.Clone(r.Context())
	out.Header.Del("Authorization")
	s.cfg.Proxy.Forward(w, out, id, "/"+rest)
}

// proxyID returns the connection id of an escaped path segment, checked.
func proxyID(seg string) (tokenkeeper.ConnectionID, error) {
	if seg == "." || seg == ".." {
		return "", invalidf("the path has a . or .. segment; percent-encode dots in ids (%%2E)")
	}
	raw, err := url.PathUnescape(seg)
	if err != nil {
		return "", invalidf("the connection id in the path is not validly percent-encoded")
	}
	id := tokenkeeper.ConnectionID(raw)
	return id, id.Validate()
}
