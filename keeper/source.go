package keeper

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
)

// TokenSource returns an [oauth2.TokenSource] for the connection id, for
// code written against x/oauth2. Its Token method takes no context (an
// x/oauth2 limitation), so each call waits at most wait (0 means 30s); use
// [Keeper.Token] where you have a context. The returned token's Expiry is
// the keeper's promise, and its TokenType is "Bearer". The source is safe
// for concurrent use; do not wrap it in oauth2.ReuseTokenSource, which
// would cache past a forced refresh.
func (k *Keeper) TokenSource(id tokenkeeper.ConnectionID, wait time.Duration) oauth2.TokenSource {
	if wait <= 0 {
		wait = 30 * time.Second
	}
	return &tokenSource{k: k, id: id, wait: wait}
}

type tokenSource struct {
	k    *Keeper
	id   tokenkeeper.ConnectionID
	wait time.Duration
}

func (s *tokenSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	t, err := s.k.Token(ctx, s.id)
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: t.Value.Reveal(), TokenType: "Bearer", Expiry: t.ExpiresAt}, nil
}

// Client returns an *http.Client whose requests carry the connection's
// access token ([Keeper.Transport] over base; nil base means
// http.DefaultTransport).
func (k *Keeper) Client(id tokenkeeper.ConnectionID, base http.RoundTripper) *http.Client {
	return &http.Client{Transport: k.Transport(id, base)}
}

// Transport returns an [http.RoundTripper] that sets "Authorization: Bearer
// <token>" on each request for the connection id (replacing any). On a 401
// that refuses the token (RFC 6750 error="invalid_token", or no error code;
// not insufficient_scope or invalid_request) it reports the token dead with
// [Keeper.Invalidate], which refreshes only if that token is still current,
// and retries once with the new token if the request can be replayed (no
// body, or GetBody set); otherwise the 401 is returned and the next request
// gets the new token. If Invalidate hands back the refused token itself
// (the provider refused the token issued for an earlier 401, within
// Config.RejectCooldown: a refresh cannot fix that), the 401 is returned
// without a retry. If the refresh finds the grant dead, the request fails
// with a [tokenkeeper.CodeReconnectRequired] error instead of the 401. It
// tells the keeper which calls are in flight with a token, so a refresh
// waits for them (up to DrainWait) before it kills that token. It is safe
// for concurrent use. Token errors are returned as the request's error;
// they carry their [tokenkeeper.Code].
func (k *Keeper) Transport(id tokenkeeper.ConnectionID, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{k: k, id: id, base: base}
}

type transport struct {
	k    *Keeper
	id   tokenkeeper.ConnectionID
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	resp, used, err := t.send(ctx, req, nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !tokenRefused(resp.Header) {
		return resp, err
	}
	// The provider refused the token: one guarded refresh, only if the
	// refused token is still current (otherwise the newer one is returned).
	fresh, ierr := t.k.Invalidate(ctx, t.id, used)
	switch tokenkeeper.ErrorCode(ierr) {
	case "":
	case tokenkeeper.CodeReconnectRequired, tokenkeeper.CodeNotFound:
		// The grant is dead or gone: say so, rather than hand back a 401
		// that only the next call would explain.
		drain(resp)
		return nil, ierr
	default:
		return resp, nil // transient: the caller sees the 401; the keeper logged why
	}
	if fresh.Value.Equal(used) {
		// The keeper kept the refused token (Config.RejectCooldown): the
		// same request with the same token would be refused again.
		return resp, nil
	}
	if !replayable(req) {
		return resp, nil // the next call gets the fresh token; this body cannot be resent
	}
	retry := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		body, gerr := req.GetBody()
		if gerr != nil {
			return resp, nil
		}
		retry.Body = body
	}
	drain(resp)
	resp, _, err = t.send(ctx, retry, &fresh)
	return resp, err
}

// tokenRefused reports whether a 401's challenges say the access token was
// refused (RFC 6750 section 3.1): a Bearer challenge with
// error="invalid_token", or no error code at all (a bare 401). A 401 whose
// challenge names another error (invalid_request, insufficient_scope) is
// not about the token's life, so it must not cost a refresh: through the
// proxy, any caller could otherwise make the provider's 401s kill the
// current token over and over.
func tokenRefused(h http.Header) bool {
	for _, c := range h.Values("WWW-Authenticate") {
		code, ok := challengeError(c)
		if !ok {
			continue
		}
		return strings.EqualFold(code, "invalid_token")
	}
	return true
}

// challengeError returns the error parameter of a challenge, if it has one.
func challengeError(c string) (string, bool) {
	lower := strings.ToLower(c)
	for i := 0; ; {
		j := strings.Index(lower[i:], "error=")
		if j < 0 {
			return "", false
		}
		at := i + j
		i = at + len("error=")
		// Only a parameter named exactly "error" (not error_description).
		if at > 0 && !strings.ContainsRune(" ,\t", rune(lower[at-1])) {
			continue
		}
		v := c[i:]
		if strings.HasPrefix(v, `"`) {
			v = v[1:]
			if end := strings.IndexByte(v, '"'); end >= 0 {
				return v[:end], true
			}
			return v, true
		}
		if end := strings.IndexAny(v, ", "); end >= 0 {
			v = v[:end]
		}
		return v, true
	}
}

// send sends req with the current token (or tok), registered as a use of
// that token for the duration of the round trip.
func (t *transport) send(ctx context.Context, req *http.Request, tok *tokenkeeper.AccessToken) (*http.Response, tokenkeeper.Secret, error) {
	for {
		var at tokenkeeper.AccessToken
		if tok != nil {
			at, tok = *tok, nil
		} else {
			var err error
			if at, err = t.k.Token(ctx, t.id); err != nil {
				return nil, tokenkeeper.Secret{}, err
			}
		}
		e := t.k.entry(t.id)
		gen := int64(0)
		if c := e.cur.Load(); c != nil && c.token.Value.Equal(at.Value) {
			gen = c.generation
		}
		if gen != 0 && !e.uses.begin(gen) {
			continue // a refresh is replacing this token (or the entry was evicted): get the new one
		}
		r := req.Clone(ctx)
		r.Header.Set("Authorization", "Bearer "+at.Value.Reveal())
		resp, err := t.base.RoundTrip(r)
		if gen != 0 {
			e.uses.end(gen)
		}
		return resp, at.Value, err
	}
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// drain reads a little of a response we discard, so that its connection
// can be reused, and closes it.
func drain(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
	}
}
