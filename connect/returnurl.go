package connect

import (
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// MaxReturnURLLength bounds a return URL, in bytes.
const MaxReturnURLLength = 2048

// checkReturnURL reports whether raw may be redirected to after a flow:
// empty (none), a path on this host ("/x", never "//host" or "/\host"), or
// an absolute http(s) URL under one of f.allowed. It returns a CodeInvalid
// error otherwise.
//
// It is strict about what browsers are lenient about: they strip tabs and
// newlines, read a backslash as a slash, and resolve "..", any of which
// could turn an allowed-looking URL into another host or path.
func (f *Flow) checkReturnURL(raw string) error {
	if raw == "" {
		return nil
	}
	invalid := func(why string) error {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "return URL %s", why)
	}
	if len(raw) > MaxReturnURLLength {
		return invalid("is too long")
	}
	if hasControl(raw) || strings.ContainsAny(raw, "\\ ") {
		return invalid("holds a space, a backslash or a control character")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("is not a URL")
	}
	if u.Scheme == "" && u.Host == "" && u.Opaque == "" && u.User == nil {
		if !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
			return invalid(`must be a path starting with "/" (not "//") or an allowed absolute URL`)
		}
		// "/.//evil.example" stays on this host, but a browser (or a
		// framework) that resolves the dot segment first sees "//evil.example".
		if hasDotSegment(u.Path) || strings.Contains(u.Path, "//") {
			return invalid(`may not have . or .. path segments or an empty segment ("//")`)
		}
		return nil
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return invalid("must be a path or an http(s) URL with a host and no user info")
	}
	if hasDotSegment(u.Path) {
		return invalid("may not have . or .. path segments")
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	host := strings.ToLower(u.Host)
	for _, a := range f.allowed {
		if a.scheme == u.Scheme && a.host == host &&
			(a.path == "/" || path == a.path || strings.HasPrefix(path, a.path+"/")) {
			return nil
		}
	}
	return invalid("is not under an allowed URL")
}
