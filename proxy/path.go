package proxy

import (
	"net/url"
	"path"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// maxDecodeLayers bounds how many times a segment is percent-decoded while
// looking for a hidden dot segment or separator (%252e%252e is ".." after
// two). Past it, what is left is refused if it still holds a '%'.
const maxDecodeLayers = 4

// resolve checks the still-escaped path p and returns the URL it names
// under target. It refuses, with [tokenkeeper.CodeInvalid], anything that
// could make the request leave target's host or its path prefix.
func resolve(target *url.URL, p string) (*url.URL, error) {
	if target.Scheme != "http" && target.Scheme != "https" || target.Host == "" || target.Opaque != "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "proxy: Target %q is not an absolute http or https URL", target.Redacted())
	}
	if err := checkPath(p); err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(target.EscapedPath(), "/")
	raw := prefix + p
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		return nil, invalid("the path is not validly percent-encoded")
	}
	u := &url.URL{Scheme: target.Scheme, Host: target.Host, Path: decoded, RawPath: raw}
	// Belt and braces: parse what will go on the wire and check it again.
	sent, err := url.Parse(u.String())
	if err != nil || sent.Scheme != target.Scheme || sent.Host != target.Host || sent.User != nil || sent.Opaque != "" ||
		!strings.HasPrefix(sent.EscapedPath(), prefix+"/") || !under(sent.Path, target.Path) {
		return nil, invalid("the path leads outside the provider's API")
	}
	return u, nil
}

// under reports whether the decoded path p has no dot or empty segments
// left and stays below prefix.
func under(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return false
	}
	return strings.HasPrefix(clean+"/", prefix+"/")
}

// checkPath refuses paths that are not a plain, absolute, escaped path.
// The messages say exactly what is wrong, so that a caller can fix it.
func checkPath(p string) error {
	switch {
	case p == "":
		return invalid("the path is empty; it must start with \"/\"")
	case strings.Contains(p, "://"):
		return invalid("the path holds \"://\": absolute URLs are not allowed, only paths under the provider's API")
	case p[0] != '/':
		return invalid("the path must start with \"/\"")
	case strings.HasPrefix(p, "//"):
		return invalid("the path starts with \"//\" (a scheme-relative URL)")
	case strings.Contains(p, "//"):
		return invalid("the path has an empty segment (\"//\")")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return invalid("the path has a control character at byte %d", i)
		case c == '\\':
			return invalid("the path has a backslash at byte %d", i)
		case c == '%':
			if i+2 >= len(p) || !ishex(p[i+1]) || !ishex(p[i+2]) {
				return invalid("the path has a malformed percent-encoding at byte %d", i)
			}
		case !pathChar(c):
			return invalid("the path has %q at byte %d; percent-encode it", rune(c), i)
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if err := checkSegment(seg); err != nil {
			return err
		}
	}
	return nil
}

// checkSegment refuses a segment that is, or decodes (in any layer) to, a
// dot segment, or that hides a slash, a backslash or a control character
// behind percent-encoding.
func checkSegment(seg string) error {
	s := seg
	for layer := 0; ; layer++ {
		if name, _, _ := strings.Cut(s, ";"); name == "." || name == ".." {
			return invalid("the path has a dot segment (%q); \".\" and \"..\" are not allowed, in any encoding", seg)
		}
		if layer > 0 {
			for i := 0; i < len(s); i++ {
				switch c := s[i]; {
				case c == '/':
					return invalid("the path has an encoded slash (%%2F) in segment %q", seg)
				case c == '\\':
					return invalid("the path has an encoded backslash (%%5C) in segment %q", seg)
				case c < 0x20 || c == 0x7f:
					return invalid("the path has an encoded control character in segment %q", seg)
				}
			}
		}
		if !strings.Contains(s, "%") {
			return nil
		}
		if layer == maxDecodeLayers {
			return invalid("the path segment %q is percent-encoded too many times", seg)
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil // a literal '%' (from %25) that starts no escape: nothing more is hidden
		}
		s = d
	}
}

// pathChar reports whether c may appear unescaped in a path: RFC 3986
// section 3.3 pchar (unreserved, sub-delims, ':' and '@') and '/'.
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func invalid(format string, args ...any) error {
	return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "proxy: "+format, args...)
}
