package keeper

import (
	"context"
	"net/http"
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
// <token>" on each request for the connection id (replacing any), and, on a
// 401 for a request it can replay (no body, or GetBody set), reports the
// token dead with [Keeper.Invalidate] and retries once with the new token.
// It tells the keeper which calls are in flight with a token, so a
// refresh waits for them (up to DrainWait) before it kills that token. It
// is safe for concurrent use. Token errors are returned as the request's
// error; they carry their [tokenkeeper.Code].
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
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !replayable(req) {
		return resp, err
	}
	// One guarded refresh: only if the refused token is still current.
	fresh, ierr := t.k.Invalidate(ctx, t.id, used)
	if ierr != nil {
		return resp, nil // the caller sees the 401; the error is logged by the keeper
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

// send sends req with the current token (or tok), registered as a use of
// that token for the duration of the round trip.
func (t *transport) send(ctx context.Context, req *http.Request, tok *tokenkeeper.AccessToken) (*http.Response, tokenkeeper.Secret, error) {
	e := t.k.entry(t.id)
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
		gen := int64(0)
		if c := e.cur.Load(); c != nil && c.token.Value.Equal(at.Value) {
			gen = c.generation
		}
		if gen != 0 && !e.uses.begin(gen) {
			continue // a refresh is replacing this token: get the new one
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

func drain(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
}
