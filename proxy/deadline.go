package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// deadline is the round tripper under ReverseProxy: it bounds the wait for
// response headers, and refuses any request not for target's host (the
// last check before a request leaves).
type deadline struct {
	rt      http.RoundTripper
	timeout time.Duration
	target  *url.URL
}

// errDeadline is the cancellation cause when the timeout fires.
var errDeadline = errors.New("proxy: response header timeout")

func (d *deadline) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != d.target.Scheme || req.URL.Host != d.target.Host || req.Host != "" {
		closeBody(req)
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "proxy: refused to send a request to another host than the provider's API")
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(d.timeout, func() { cancel(errDeadline) })
	resp, err := d.rt.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() {
		// The timer fired: ctx is cancelled, so even a response that made it
		// is unusable (its body would fail mid-read).
		if resp != nil {
			resp.Body.Close()
		}
		return nil, &tokenkeeper.Error{Code: tokenkeeper.CodeUnavailable,
			Message: "the provider's API sent no response within " + d.timeout.String(),
			Err:     errors.Join(ErrTimeout, err)}
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	// The body streams with no deadline but the inbound request's.
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// cancelBody releases the round trip's context once the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
