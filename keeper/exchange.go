package keeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/oautherr"
)

// class is what a token request's outcome means for the refresh protocol.
type class int

const (
	classOK class = iota
	// classDead: invalid_grant or invalid_token (RFC 6749 section 5.2): the
	// refresh token is dead, unless the store shows we lost a race.
	classDead
	// classClient: invalid_client or unauthorized_client: the integration's
	// own credentials are refused. Nothing rotated; connections live on.
	classClient
	// classNotSent: the request never left (DNS, refused connection): nothing
	// can have rotated. Retried.
	classNotSent
	// classBusy: 429: the provider turned the request away; nothing rotated.
	// Retried, honouring Retry-After.
	classBusy
	// classServer: a 5xx. The provider may have rotated before failing, so
	// the outcome is unknown; retried, honouring Retry-After.
	classServer
	// classLost: sent, and no usable answer (timeout, reset, a 200 that does
	// not parse or lacks the access token): the outcome is unknown.
	classLost
	// classRejected: another 4xx. Nothing rotated; not retried.
	classRejected
)

func (c class) String() string {
	return [...]string{"ok", "invalid_grant", "client_rejected", "not_sent", "rate_limited", "server_error", "response_lost", "rejected"}[c]
}

// result is one token request's outcome.
type result struct {
	class      class
	tok        *oauth2.Token
	err        error // nil for classOK; never holds a token in its text
	retryAfter time.Duration
	status     int
	code       string // the RFC 6749 error code, if any
}

// exchange presents refresh to the token endpoint once (RFC 6749 section
// 6), on ctx for at most RefreshTimeout, and classes the outcome. It
// records whether the request was written, since only an unwritten request
// is proof that nothing rotated.
func (k *Keeper) exchange(ctx context.Context, refresh tokenkeeper.Secret) result {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RefreshTimeout)
	defer cancel()
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	ctx = context.WithValue(ctx, oauth2.HTTPClient, k.client)
	src := k.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh.Reveal()})
	tok, err := src.Token()
	if err == nil {
		return result{class: classOK, tok: tok, status: http.StatusOK}
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return classify(re)
	}
	if !wrote.Load() {
		return result{class: classNotSent, err: fmt.Errorf("token request not sent: %w", sanitize(err))}
	}
	return result{class: classLost, err: fmt.Errorf("token request sent, no usable response: %w", sanitize(err))}
}

func classify(re *oauth2.RetrieveError) result {
	r := result{code: errorCode(re.ErrorCode), err: &oautherr.Error{RetrieveError: re}}
	if re.Response != nil {
		r.status = re.Response.StatusCode
		r.retryAfter = retryAfter(re.Response.Header.Get("Retry-After"), time.Now())
	}
	switch {
	case r.code == "invalid_grant" || r.code == "invalid_token":
		r.class = classDead
	case r.code == "invalid_client" || r.code == "unauthorized_client":
		r.class = classClient
	case r.status == http.StatusTooManyRequests:
		r.class = classBusy
	case r.status >= 500:
		r.class = classServer
	case r.status >= 200 && r.status < 300:
		// A 200 carrying an error code: unorthodox, and nobody can tell what
		// the provider did with the token.
		r.class = classLost
	default:
		r.class = classRejected
	}
	return r
}

// sanitized hides the text of an error from the HTTP stack or x/oauth2
// that might quote a response body, keeping it in the chain for errors.Is.
type sanitized struct{ err error }

func (e *sanitized) Error() string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(e.err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(e.err, context.Canceled):
		return "cancelled"
	case errors.As(e.err, &ne) && ne.Timeout():
		return "network timeout"
	}
	var ue interface{ Unwrap() error }
	if errors.As(e.err, &ue) {
		if u := ue.Unwrap(); u != nil && errors.Is(e.err, u) {
			return "transport error: " + u.Error()
		}
	}
	return "malformed or incomplete response"
}

func (e *sanitized) Unwrap() error { return e.err }

func sanitize(err error) error { return &sanitized{err} }

// errorCode returns the provider's RFC 6749 section 5.2 error code as it
// may be stored and logged: the printable ASCII the RFC allows (%x20-21,
// %x23-5B, %x5D-7E), at most 64 bytes; anything else becomes '?'. A
// provider could send any bytes, and the store refuses invalid UTF-8.
func errorCode(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

// maxRetryAfter caps what a provider's Retry-After can ask for.
const maxRetryAfter = 24 * time.Hour

// retryAfter parses a Retry-After header (RFC 9110 section 10.2.3), as
// seconds or an HTTP date; 0 if absent or unparsable, at most a day.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}
