package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The rules a client can break. Each [Violation] names one.
const (
	// RuleRefreshTokenReuse: a rotated-out refresh token was presented.
	RuleRefreshTokenReuse = "refresh_token_reuse"
	// RuleExpiredRefreshToken: an expired refresh token was presented.
	RuleExpiredRefreshToken = "expired_refresh_token"
	// RuleConcurrentRefresh: two refreshes of one authorisation overlapped.
	RuleConcurrentRefresh = "concurrent_refresh"
	// RuleStaleAccessToken: the API was called with an expired or superseded access token.
	RuleStaleAccessToken = "stale_access_token"
	// RuleRetryAfterInvalidGrant: a dead authorisation was refreshed again after the
	// client had been told invalid_grant.
	RuleRetryAfterInvalidGrant = "retry_after_invalid_grant"
	// RuleRetryTooSoon: a retry came before the Retry-After it was given had passed.
	RuleRetryTooSoon = "retry_too_soon"
	// RuleClientAuthMethod: client credentials were sent in the body when only HTTP Basic
	// is allowed.
	RuleClientAuthMethod = "client_auth_method"
	// RulePKCEMissing: PKCE was missing, or used the plain method.
	RulePKCEMissing = "pkce_missing"
	// RuleAuthorizationCodeReuse: an authorization code that was already exchanged was
	// presented again (RFC 6749 §4.1.2). Every token issued from it is revoked.
	RuleAuthorizationCodeReuse = "authorization_code_reuse"
	// RuleStateNotVerified: a code was exchanged although the redirect that carried it
	// had a state the client never sent (the wrong_state fault). RFC 6749 §10.12: the
	// client must check state before anything else.
	RuleStateNotVerified = "state_not_verified"
)

// Rules lists every rule the ledger checks.
func Rules() []string {
	return []string{
		RuleRefreshTokenReuse, RuleExpiredRefreshToken, RuleConcurrentRefresh,
		RuleStaleAccessToken, RuleRetryAfterInvalidGrant, RuleRetryTooSoon,
		RuleClientAuthMethod, RulePKCEMissing, RuleAuthorizationCodeReuse, RuleStateNotVerified,
	}
}

// Violation is one broken rule.
type Violation struct {
	Rule string `json:"rule"`
	// Authorisation is the id of the token family concerned, or empty when none is known
	// (a client authentication mistake, say).
	Authorisation string    `json:"authorisation"`
	At            time.Time `json:"at"`
	Detail        string    `json:"detail"`
	// LostResponse is true when the client could not have known better: the response
	// that would have told it (a rotation, say) was lost to an injected after-commit
	// fault, or the client had given up waiting for it. Pleo enforces the rule all the
	// same, so the authorisation may be dead; but the client did not break the rule by
	// itself.
	LostResponse bool `json:"lost_response,omitempty"`
}

// AuthorisationReport is one token family in the [Report].
type AuthorisationReport struct {
	ID            string     `json:"id"`
	ClientID      string     `json:"client_id"`
	Subject       string     `json:"subject"`
	State         string     `json:"state"`
	Scopes        []string   `json:"scopes"`
	Refreshes     int        `json:"refreshes"`
	CreatedAt     time.Time  `json:"created_at"`
	RevokedReason string     `json:"revoked_reason,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
}

// Report is the ledger: what happened, and which rules were broken.
type Report struct {
	// Now is the emulator's clock when the report was taken.
	Now time.Time `json:"now"`
	// Counters counts outcomes per endpoint or grant type: "authorization_code",
	// "refresh_token", "token" (requests that named no valid grant), "introspect",
	// "authorize" and "api". An outcome is "ok", an RFC 6749 or RFC 6750 error code
	// ("invalid_grant", "invalid_token", ...), an HTTP status for other API errors
	// ("400", "404"), or "fault:KIND" for an injected fault. A request answered with an
	// after-commit fault or omit_refresh_token counts twice: under the outcome of what it
	// did ("ok") and under the fault that changed its answer.
	Counters map[string]map[string]int64 `json:"counters"`
	// Authorisations lists every token family, oldest first.
	Authorisations []AuthorisationReport `json:"authorisations"`
	// Violations lists broken rules in order, up to Config.MaxViolations.
	Violations []Violation `json:"violations"`
	// ViolationCounts counts every violation by rule, including those past the limit.
	ViolationCounts map[string]int `json:"violation_counts"`
	// ViolationsDropped counts violations not listed because of the limit.
	ViolationsDropped int `json:"violations_dropped"`
	// LostResponseViolations counts the violations, included in ViolationCounts, that
	// followed a lost response (Violation.LostResponse). A client without bugs under
	// after-commit faults has only these.
	LostResponseViolations int `json:"lost_response_violations"`
}

// ledger records outcomes and violations. It is guarded by Emulator.mu.
type ledger struct {
	// pending holds log lines written while Emulator.mu is held; Emulator.unlock writes
	// them after unlocking, so a slow log sink never stalls other requests.
	pending    []pendingLog
	max        int
	counters   map[string]map[string]int64
	violations []Violation
	counts     map[string]int
	dropped    int
	lost       int
	// retryAfter holds, per request key, the time before which a retry is too soon.
	retryAfter map[string]time.Time
}

func newLedger(max int) *ledger {
	return &ledger{
		max:        max,
		counters:   map[string]map[string]int64{},
		counts:     map[string]int{},
		retryAfter: map[string]time.Time{},
	}
}

type pendingLog struct {
	level slog.Level
	msg   string
	args  []any
}

func (l *ledger) logLater(level slog.Level, msg string, args ...any) {
	l.pending = append(l.pending, pendingLog{level, msg, args})
}

// unlock releases e.mu, then writes the log lines queued while it was held.
func (e *Emulator) unlock() {
	pending := e.ledger.pending
	e.ledger.pending = nil
	e.mu.Unlock()
	for _, p := range pending {
		e.log.Log(context.Background(), p.level, p.msg, p.args...)
	}
}

// maxRetryKeys bounds the Retry-After promises kept; past it, those already past are
// swept, so a client that draws many 503s cannot grow memory without bound.
const maxRetryKeys = 10000

func (l *ledger) promiseRetryAfter(key string, until, now time.Time) {
	if len(l.retryAfter) >= maxRetryKeys {
		for k, t := range l.retryAfter {
			if !now.Before(t) {
				delete(l.retryAfter, k)
			}
		}
		if len(l.retryAfter) >= maxRetryKeys {
			return // the client is hammering: its next retries go unchecked
		}
	}
	l.retryAfter[key] = until
}

func (l *ledger) count(endpoint, outcome string) {
	m := l.counters[endpoint]
	if m == nil {
		m = map[string]int64{}
		l.counters[endpoint] = m
	}
	m[outcome]++
}

func (l *ledger) violate(rule, auth string, at time.Time, detail string) {
	l.violateFlagged(false, rule, auth, at, detail)
}

// violateFlagged records a violation, flagged LostResponse when lostResponse is set.
func (l *ledger) violateFlagged(lostResponse bool, rule, auth string, at time.Time, detail string) {
	l.counts[rule]++
	if lostResponse {
		l.lost++
		detail += " (after a lost response)"
	}
	l.logLater(slog.LevelWarn, "rule violated", "rule", rule, "authorisation", auth, "detail", detail)
	if len(l.violations) >= l.max {
		l.dropped++
		return
	}
	l.violations = append(l.violations, Violation{Rule: rule, Authorisation: auth, At: at, Detail: detail, LostResponse: lostResponse})
}

// checkRetry records a retry_too_soon violation if key was told to wait until after now.
func (l *ledger) checkRetry(key, auth string, now time.Time) {
	if key == "" {
		return
	}
	until, ok := l.retryAfter[key]
	if !ok {
		return
	}
	delete(l.retryAfter, key)
	if now.Before(until) {
		l.violate(RuleRetryTooSoon, auth, now, "retried "+until.Sub(now).Round(time.Millisecond).String()+" before Retry-After had passed")
	}
}

// Report returns a snapshot of the ledger.
func (e *Emulator) Report() Report {
	e.mu.Lock()
	defer e.unlock()
	l := e.ledger
	r := Report{
		Now:                    e.clock.Now(),
		Counters:               map[string]map[string]int64{},
		Authorisations:         make([]AuthorisationReport, 0, len(e.st.order)),
		Violations:             append([]Violation{}, l.violations...),
		ViolationCounts:        map[string]int{},
		ViolationsDropped:      l.dropped,
		LostResponseViolations: l.lost,
	}
	for k, m := range l.counters {
		cp := make(map[string]int64, len(m))
		for o, n := range m {
			cp[o] = n
		}
		r.Counters[k] = cp
	}
	for k, n := range l.counts {
		r.ViolationCounts[k] = n
	}
	for _, a := range e.st.order {
		ar := AuthorisationReport{
			ID: a.id, ClientID: a.clientID, Subject: a.company.URN(), State: a.state,
			Scopes: append([]string{}, a.scopes...), Refreshes: a.refreshes, CreatedAt: a.createdAt,
			RevokedReason: a.revokedReason,
		}
		if !a.revokedAt.IsZero() {
			t := a.revokedAt
			ar.RevokedAt = &t
		}
		r.Authorisations = append(r.Authorisations, ar)
	}
	return r
}

// Revoke revokes every token of the authorisation id, as when the user uninstalls the app
// in Pleo. It fails with [ErrUnknownAuthorisation] if the authorisation is unknown. Revoking a revoked authorisation is a
// no-op.
func (e *Emulator) Revoke(id string) error {
	e.mu.Lock()
	defer e.unlock()
	a := e.st.auths[id]
	if a == nil {
		return fmt.Errorf("%w %q", ErrUnknownAuthorisation, id)
	}
	e.revokeLocked(a, RevokedByUser, e.clock.Now())
	return nil
}

// ErrUnknownAuthorisation is returned (wrapped) for an authorisation id the emulator has
// never issued.
var ErrUnknownAuthorisation = errors.New("emulator: unknown authorisation")
