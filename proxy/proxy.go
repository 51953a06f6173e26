// Package proxy forwards HTTP requests for a connection to the provider's
// API, injecting the connection's access token on the way, so that the
// token never leaves tokenkeeper.
//
// A [Proxy] is an adapter over [net/http/httputil.ReverseProxy] with a
// Rewrite hook. It reaches only its configured API base (Target): the
// proxied path is checked before anything is sent (no dot segments, no
// encoded slashes or backslashes, no scheme-relative or absolute URLs, no
// control characters, in any encoding layer), and the URL built from it is
// checked again. It drops the caller's credentials (Authorization,
// Proxy-Authorization, Cookie) and forwarding headers, and adds none that
// would reveal internal addresses; it strips Set-Cookie from responses. It
// streams both bodies, buffering a request body only up to a bound so that
// a retry after a 401 can resend it.
//
// Token injection, in-flight tracking and the one retry after a 401 are the
// job of the round tripper that [Proxy.Transport] returns (in production
// keeper.Transport); this package imports no keeper and no store.
package proxy

import (
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Defaults used where a [Proxy] field is zero.
const (
	// DefaultMaxReplayBody is the largest request body buffered for a
	// retry when [Proxy.MaxReplayBody] is 0: 1 MiB.
	DefaultMaxReplayBody int64 = 1 << 20
	// DefaultTimeout bounds the wait for response headers when
	// [Proxy.Timeout] is 0: 60 seconds.
	DefaultTimeout = 60 * time.Second
)

// Proxy forwards HTTP requests for a connection to the provider's API,
// injecting the connection's token.
//
// Target and Transport are required; every other zero value means the
// default named on the field. A Proxy is safe for concurrent use by many
// goroutines once its fields are set: do not change them, or copy the
// Proxy, after the first call to [Proxy.Forward].
type Proxy struct {
	// Target is the provider's API base URL: scheme (http or https), host
	// and an optional path prefix. Its user info, query and fragment are
	// ignored. Required.
	Target *url.URL
	// Transport returns the round tripper for a connection. cmd wires
	// keeper.Transport(id, base), which injects the bearer token, registers
	// the in-flight use, and on a 401 does Invalidate (retry with the
	// current token if the used one was superseded, else one guarded
	// refresh) then one retry when the request is replayable (GetBody set).
	// The errors it returns reach [Proxy.Error]; a *tokenkeeper.Error keeps
	// its code. Required; it is called once per request and must not
	// return nil.
	Transport func(id tokenkeeper.ConnectionID) http.RoundTripper
	// MaxReplayBody: request bodies up to this many bytes are buffered so
	// the retry can resend them (GetBody set); larger bodies, and bodies of
	// unknown length that turn out larger, stream through without a retry.
	// 0 means DefaultMaxReplayBody (1 MiB). Negative: never buffer. Each
	// request in flight may hold up to this much memory.
	MaxReplayBody int64
	// Timeout bounds the wait for the upstream's response headers, token
	// wait and retry included (0 or negative means DefaultTimeout, 60s);
	// the body then streams with no overall deadline except the inbound
	// request's context.
	Timeout time.Duration
	// Error writes an error response. Its err is a *tokenkeeper.Error, and
	// wraps [ErrUnreachable] or [ErrTimeout] when the upstream could not be
	// reached or was too slow. nil means [WriteError]. It is never given a
	// token.
	Error func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives one record per failed request (never a token, never a
	// query string); nil discards.
	Logger *slog.Logger

	once    sync.Once
	log     *slog.Logger
	errLog  *log.Logger
	buffers buffers
}

// Forward proxies r to Target + path for the connection id. path is the
// still-escaped path after ".../proxy" (starting with "/", e.g.
// "/v2/employees"), as r.URL.EscapedPath() holds it. r.URL.RawQuery is
// forwarded, less any pair that does not parse (one holding a semicolon,
// say), as ReverseProxy does. Any method is forwarded; protocol upgrades
// (Upgrade, WebSocket) are not: a tunnel would outlive the token's
// in-flight tracking.
//
// Errors are written with [Proxy.Error]: [tokenkeeper.CodeInvalid] (400)
// for an invalid id or a path that could leave Target, the transport's
// token errors with their own code ([tokenkeeper.CodeNotFound],
// [tokenkeeper.CodeReconnectRequired], [tokenkeeper.CodeUnavailable], ...),
// and [tokenkeeper.CodeUnavailable] wrapping [ErrUnreachable] (502) or
// [ErrTimeout] (504). An upstream's own error statuses, 401 included, pass
// through unchanged.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, id tokenkeeper.ConnectionID, path string) {
	p.once.Do(p.init)
	if p.Target == nil || p.Transport == nil {
		p.fail(w, r, id, path, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "proxy: Target and Transport are required"))
		return
	}
	if err := id.Validate(); err != nil {
		p.fail(w, r, id, path, err)
		return
	}
	target, err := resolve(p.Target, path)
	if err != nil {
		p.fail(w, r, id, path, err)
		return
	}
	in, err := bufferBody(r, p.maxReplayBody())
	if err != nil {
		p.fail(w, r, id, path, err)
		return
	}
	rt := p.Transport(id)
	if rt == nil {
		p.fail(w, r, id, path, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "proxy: Transport returned nil for connection %s", id))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := *target
			u.RawQuery = pr.Out.URL.RawQuery // the inbound query, unparsable pairs removed
			pr.Out.URL = &u
			pr.Out.Host = "" // the Host header is Target's host, whatever the caller sent
			scrubRequest(pr.Out.Header)
		},
		Transport:      &deadline{rt: rt, timeout: p.timeout(), target: target},
		FlushInterval:  -1, // stream: flush every write at once
		ErrorLog:       p.errLog,
		BufferPool:     &p.buffers,
		ModifyResponse: scrubResponse,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			p.fail(w, r, id, path, classify(r, err))
		},
	}
	rp.ServeHTTP(w, in)
}

func (p *Proxy) init() {
	p.log = p.Logger
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.errLog = slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)
}

// buffers recycles the response copy buffers across requests.
type buffers struct{ pool sync.Pool }

func (b *buffers) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *buffers) Put(buf []byte) { b.pool.Put(&buf) }

func (p *Proxy) maxReplayBody() int64 {
	if p.MaxReplayBody == 0 {
		return DefaultMaxReplayBody
	}
	return p.MaxReplayBody
}

func (p *Proxy) timeout() time.Duration {
	if p.Timeout <= 0 {
		return DefaultTimeout
	}
	return p.Timeout
}
