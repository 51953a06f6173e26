package proxy

import (
	"bytes"
	"io"
	"net/http"

	"github.com/tokenkeeper/tokenkeeper"
)

// bufferBody returns r, or a shallow copy of it whose body is buffered and
// replayable (GetBody set, ContentLength known) when it holds at most max
// bytes. A larger body, or any body when max is negative, streams: what was
// read while finding out is sent first, then the rest, and GetBody is nil,
// so the transport does not retry. The caller's r is never modified.
//
// It fails with [tokenkeeper.CodeInvalid] if the body cannot be read.
func bufferBody(r *http.Request, max int64) (*http.Request, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return r, nil // replayable as it is
	}
	if max < 0 || r.ContentLength > max {
		return r, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1) // +1: ReadFrom need not grow to see EOF
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, max+1)); err != nil {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "proxy: read the request body: %w", err)
	}
	out := new(http.Request)
	*out = *r
	if int64(buf.Len()) > max {
		out.Body = &prefixed{Reader: io.MultiReader(bytes.NewReader(buf.Bytes()), r.Body), body: r.Body}
		out.GetBody = nil
		return out, nil
	}
	data := buf.Bytes()
	out.ContentLength = int64(len(data))
	out.TransferEncoding = nil
	out.GetBody = func() (io.ReadCloser, error) {
		if len(data) == 0 {
			return http.NoBody, nil
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	out.Body, _ = out.GetBody()
	return out, nil
}

// prefixed is a body of unknown length that turned out too large to
// buffer: the bytes read so far, then the rest of the inbound body.
type prefixed struct {
	io.Reader
	body io.Closer
}

func (p *prefixed) Close() error { return p.body.Close() }
