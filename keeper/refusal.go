package keeper

import (
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// refusal remembers the last token this process handed out in place of a
// current token that the provider refused (a 401 reported to Invalidate),
// and when. If that token is refused too while it is still current, the
// refresh that produced it did not help, and another one is unlikely to:
// see Config.RejectCooldown and docs/design.md, "Forced refresh after a
// 401".
type refusal struct {
	mu     sync.Mutex
	token  tokenkeeper.Secret // the replacement
	at     time.Time          // when it was first handed out, keeper clock
	warned bool               // this window's warning was logged
}

// note records tok as handed out at now in place of a refused token. Noting
// the same token again keeps the window's start, so that the waiters of one
// flight, or late reports of the old token, do not extend it.
func (r *refusal) note(tok tokenkeeper.Secret, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.token.Equal(tok) {
		return
	}
	r.token, r.at, r.warned = tok, now, false
}

// keepRefused decides, for a flight asked to refresh because the provider
// refused rec's current token c, whether to keep c instead: c is the
// token handed out in place of a refused one less than RejectCooldown ago,
// and is still within its promise (so it cannot have expired at the
// provider). A marker in rec means a refresh in flight, here or in another
// process, may be rotating c right now, which would explain the 401: then
// the flight goes on and waits for that refresh, as without the guard.
//
// It counts each kept token in tokenkeeper_refreshes_suppressed_total and
// logs one warning per window; never a token.
func (k *Keeper) keepRefused(e *entry, rec *tokenkeeper.Record, c *cached, now time.Time) bool {
	if k.cfg.RejectCooldown < 0 || !rec.Pending.IsZero() || !now.Before(c.token.ExpiresAt) {
		return false
	}
	r := &e.refusal
	r.mu.Lock()
	until := r.at.Add(k.cfg.RejectCooldown)
	if !r.token.Equal(c.token.Value) || !now.Before(until) {
		r.mu.Unlock()
		return false
	}
	warn := !r.warned
	r.warned = true
	issued := r.at
	r.mu.Unlock()

	k.metrics.suppressedOne()
	if warn {
		k.log.Warn("refresh: the provider refuses the token just issued in place of a refused one; a refresh cannot fix that, so refused tokens cause no refresh until the cooldown ends",
			"connection", e.id, "issued_at", issued, "cooldown", k.cfg.RejectCooldown, "next_refresh_allowed_at", until)
	}
	return true
}

// noteAdopted notes c, the store's current token that a flight returns
// without refreshing, if it replaces this process's token and a caller
// reported that one refused: another process refreshed (perhaps for its own
// 401), and c is handed out in place of the refused token. Without this,
// replicas would take turns refreshing, each trusting only its own notes.
func (k *Keeper) noteAdopted(e *entry, f *flight, c *cached, now time.Time) {
	if old := e.cur.Load(); old != nil && !old.token.Value.Equal(c.token.Value) && f.isStale(old.token.Value) {
		e.refusal.note(c.token.Value, now)
	}
}
