package proxy

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// scrubRequest removes the caller's credentials, forwarding headers (which
// would reveal internal addresses) and protocol upgrades from h, whatever
// the case of their names. The token is set later by the connection's
// transport.
func scrubRequest(h http.Header) {
	for k := range h {
		switch ck := textproto.CanonicalMIMEHeaderKey(k); ck {
		case "Authorization", "Proxy-Authorization", "Cookie", "Forwarded", "X-Real-Ip", "Connection", "Upgrade":
			delete(h, k)
		default:
			if strings.HasPrefix(ck, "X-Forwarded-") {
				delete(h, k)
			}
		}
	}
}

// scrubResponse keeps the provider's cookies away from callers: Set-Cookie
// is removed from the headers, from the announced trailers, and from the
// trailers that arrive with the body (net/http reports undeclared ones too).
func scrubResponse(resp *http.Response) error {
	scrubCookies(resp.Header)
	scrubCookies(resp.Trailer)
	resp.Body = &trailerScrub{ReadCloser: resp.Body, resp: resp}
	return nil
}

func scrubCookies(h http.Header) {
	for k := range h {
		if ck := textproto.CanonicalMIMEHeaderKey(k); ck == "Set-Cookie" || ck == "Set-Cookie2" {
			delete(h, k)
		}
	}
}

// trailerScrub removes cookies from the trailers, which net/http fills in
// as the body ends; ReverseProxy copies them only after Close.
type trailerScrub struct {
	io.ReadCloser
	resp *http.Response
}

func (b *trailerScrub) Close() error {
	err := b.ReadCloser.Close()
	scrubCookies(b.resp.Trailer)
	return err
}
