// Package storetest is the conformance suite of [tokenkeeper.Store], and of
// the [tokenkeeper.APIKeyStore] and [tokenkeeper.AuditLog] that every store
// also is: every backend (SQLite, PostgreSQL) runs [Run] from its own tests
// against a real database, so that the keeper and the HTTP API can rely on
// the same behaviour from each.
//
// The suite checks only what the contracts say, plus the choices the
// contracts leave open that backends must still make alike (listed in the
// doc of [Run]). It uses the wall clock: the lease tests take leases of a
// few hundred milliseconds and sleep until they expire. Its subtests run
// in parallel, each on a fresh store; the slowest create 1001 connections
// and 1001 audit entries to check the caps on the listings' Limit.
package storetest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tokenkeeper/tokenkeeper"
)

// Run runs the conformance suite against stores made by open. Each subtest
// calls open for a fresh, empty store; open registers its own cleanup with
// t.Cleanup (closing the store, removing the database) and fails t if it
// cannot open one. Subtests run in parallel, so open must be safe to call
// from several goroutines. The store must also be a
// [tokenkeeper.APIKeyStore], a [tokenkeeper.AuditLog], a [tokenkeeper.EventLog]
// and a [tokenkeeper.WebhookStore]: the tests of
// those fail, not skip, if it is not.
//
// Besides the contract's own clauses, the suite pins these choices, which
// every backend must make alike:
//   - CreateConnection with a Generation other than 1: CodeInvalid.
//   - ListConnections orders ids by bytes (as COLLATE "C" does), treats a
//     negative Limit like 0, and NextRefreshBefore skips connections with a
//     zero NextRefreshAt (no refresh planned).
//   - UpdateLeased, RenewLease and AcquireLease of a connection that does
//     not exist: CodeNotFound.
//   - AcquireLease refused with CodeUnavailable returns the zero Lease
//     (the holder's is in the record).
//   - ReleaseLease of a lease that has expired changes nothing, like that
//     of a lease taken over; and so does ReleaseLease on a missing
//     connection.
//   - TakeSession returns an expired session that has not been deleted
//     (checking ExpiresAt is policy, the caller's); DeleteExpiredSessions
//     keeps a session that expires exactly at now.
//   - Time bounds (ListConnections' LastRefreshBefore and
//     NextRefreshBefore, DeleteExpiredSessions' now) are exact to the
//     nanosecond: a stored time passes if it is strictly before the bound,
//     so a store rounds a bound with a sub-microsecond part up to the
//     microsecond, never down.
//   - Text that is not valid UTF-8 in any field a write stores (a Record's
//     ID, Provider, Subject, Scopes, State, LastError, Metadata keys and
//     values, key ids, Tokens.Scope, Pending.Owner; a Session's
//     ConnectionID, ReturnURL, Verifier.KeyID; AcquireLease's owner) is
//     refused with CodeInvalid, and the error names the field (by its Go
//     name). Nothing is stored. Valid UTF-8 comes back byte for byte. The
//     same holds for an APIKey's ID, Name and Scopes, and an AuditEntry's
//     Actor, Action, ConnectionID and Detail.
//   - So is text that holds a NUL byte (U+0000), in the same fields:
//     PostgreSQL's text cannot hold one, so no store accepts one. A lookup
//     by a key with a NUL byte (GetConnection, DeleteConnection,
//     AcquireLease, GetAPIKey) is CodeNotFound, and ReleaseLease of an
//     owner with one changes nothing, as for any key never stored.
//   - UpdatedBefore, like the other bounds, is exact to the nanosecond, and
//     a zero UpdatedAt is before every bound.
//   - DeleteConnection of a connection that does not exist is CodeNotFound
//     whatever expect is (not CodeConflict).
//   - CountConnections may leave out or give 0 for a state with none.
//   - CreateAPIKey refuses (CodeInvalid) a key with an empty ID, and a name
//     or scopes that NewAPIKey would refuse: a blank name, one over 200
//     bytes or with control characters, an unknown scope. It stores every
//     field as given, RevokedAt included.
//   - ListAPIKeys orders keys created at the same microsecond by id (byte
//     order).
//   - RevokeAPIKey with the zero time is CodeInvalid (it would store "not
//     revoked"); a second revocation keeps the first time even if the
//     second passes an earlier one.
//   - AppendAudit ignores an ID already set in the entry, and modifies
//     nothing else; on an error it leaves ID alone.
//   - ListAudit treats a negative Limit like 0; a negative Before selects
//     nothing; ConnectionID matches exactly.
func Run(t *testing.T, open func(t *testing.T) tokenkeeper.Store) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"CreateConnection", createConnectionTests()},
		{"GetConnection", getConnectionTests()},
		{"UpdateConnection", updateConnectionTests()},
		{"UpdateLeased", updateLeasedTests()},
		{"DeleteConnection", deleteConnectionTests()},
		{"ListConnections", listConnectionsTests()},
		{"AcquireLease", acquireLeaseTests()},
		{"RenewLease", renewLeaseTests()},
		{"ReleaseLease", releaseLeaseTests()},
		{"CreateSession", createSessionTests()},
		{"TakeSession", takeSessionTests()},
		{"DeleteExpiredSessions", deleteExpiredSessionsTests()},
		{"CountConnections", countConnectionsTests()},
		{"CreateAPIKey", createAPIKeyTests()},
		{"GetAPIKey", getAPIKeyTests()},
		{"ListAPIKeys", listAPIKeysTests()},
		{"RevokeAPIKey", revokeAPIKeyTests()},
		{"AppendAudit", appendAuditTests()},
		{"ListAudit", listAuditTests()},
		{"NUL", nulTests()},
		{"AppendEvent", appendEventTests()},
		{"ListEvents", listEventsTests()},
		{"LatestEvents", latestEventsTests()},
		{"PruneEvents", pruneEventsTests()},
		{"WebhookEndpoint", webhookEndpointTests()},
		{"ClaimDeliveries", claimDeliveriesTests()},
		{"FinishAttempt", finishAttemptTests()},
		{"ListDeliveries", listDeliveriesTests()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, open(t))
				})
			}
		})
	}
}

// test is one subtest of the suite.
type test struct {
	name string
	run  func(t *testing.T, s tokenkeeper.Store)
}

// Durations of the lease tests. long never runs out during a test; short
// is waited out.
const (
	long  = time.Hour
	short = 200 * time.Millisecond
)

// now returns the wall clock as the suite writes it: UTC, truncated to the
// microsecond, as stores return times.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// sealed returns a non-trivial sealed value: every byte value that trips
// up text handling (NUL, invalid UTF-8) plus random bytes.
func sealed(keyID string) tokenkeeper.Sealed {
	b := append([]byte{0x00, 0xff, 0xfe, 0x80, '\'', '"', '\\', 0x00}, rand.Text()...)
	return tokenkeeper.Sealed{KeyID: keyID, Ciphertext: b}
}

// record returns a new record (Generation 1) with every field set to a
// distinct value, times truncated to the microsecond in UTC, and a Lease
// that writes must ignore.
func record(id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	t := now()
	return &tokenkeeper.Record{
		Connection: tokenkeeper.Connection{
			ID:            id,
			Provider:      "pleo",
			Subject:       "urn:pleo:company:" + string(id),
			Scopes:        []string{"users:read", "expenses:read", "ünïcode"},
			State:         tokenkeeper.StateActive,
			DegradedSince: t.Add(-5 * time.Minute),
			Generation:    1,
			CreatedAt:     t.Add(-time.Hour),
			UpdatedAt:     t.Add(-time.Minute),
			LastRefreshAt: t.Add(-30 * time.Minute),
			NextRefreshAt: t.Add(20 * time.Minute),
			LastError:     "token endpoint: 503 \"busy\"",
			Metadata:      map[string]string{"tenant": "t-1", "plan": "gold", "empty": ""},
		},
		Tokens: tokenkeeper.SealedTokenSet{
			AccessToken:  sealed("key-1"),
			RefreshToken: sealed("key-2"),
			Expiry:       t.Add(time.Hour),
			ExpiresAt:    t.Add(50 * time.Minute),
			Scope:        "users:read expenses:read",
		},
		Pending: tokenkeeper.Pending{Since: t.Add(-time.Second), Owner: "replica-7", Unknown: true},
		Lease:   tokenkeeper.Lease{Owner: "ignored", Fence: 99, ExpiresAt: t.Add(time.Hour)},
	}
}

// create stores rec or fails t.
func create(t *testing.T, s tokenkeeper.Store, rec *tokenkeeper.Record) {
	t.Helper()
	if err := s.CreateConnection(t.Context(), rec); err != nil {
		t.Fatalf("CreateConnection(%s): %v", rec.ID, err)
	}
}

// get reads the record id or fails t.
func get(t *testing.T, s tokenkeeper.Store, id tokenkeeper.ConnectionID) *tokenkeeper.Record {
	t.Helper()
	rec, err := s.GetConnection(t.Context(), id)
	if err != nil {
		t.Fatalf("GetConnection(%s): %v", id, err)
	}
	checkTimes(t, rec)
	return rec
}

// wantCode fails t unless err has code.
func wantCode(t *testing.T, err error, code tokenkeeper.Code) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (error: %v), want %q", got, err, code)
	}
}

// cmpEmpty makes nil and empty slices and maps equal.
var cmpEmpty = cmpopts.EquateEmpty()

// wantEqual fails t unless got equals want (nil and empty alike); what
// names got.
func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpEmpty); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

// wantRecord fails t unless got equals want.
func wantRecord(t *testing.T, got, want *tokenkeeper.Record) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("record mismatch (-want +got):\n%s", diff)
	}
}

// withLease returns a copy of rec with lease l.
func withLease(rec *tokenkeeper.Record, l tokenkeeper.Lease) *tokenkeeper.Record {
	c := *rec
	c.Lease = l
	return &c
}

// checkTimes fails t unless every time of rec is in UTC and whole
// microseconds (cmp compares times with Equal, which ignores the location).
func checkTimes(t *testing.T, rec *tokenkeeper.Record) {
	t.Helper()
	for name, v := range map[string]time.Time{
		"DegradedSince": rec.DegradedSince, "CreatedAt": rec.CreatedAt, "UpdatedAt": rec.UpdatedAt,
		"LastRefreshAt": rec.LastRefreshAt, "NextRefreshAt": rec.NextRefreshAt,
		"Tokens.Expiry": rec.Tokens.Expiry, "Tokens.ExpiresAt": rec.Tokens.ExpiresAt,
		"Pending.Since": rec.Pending.Since, "Lease.ExpiresAt": rec.Lease.ExpiresAt,
	} {
		if v.Location() != time.UTC || v.Nanosecond()%1000 != 0 {
			t.Errorf("%s = %v, want UTC and whole microseconds", name, v)
		}
	}
}

// sleepPast sleeps until l has expired, with a margin.
func sleepPast(l tokenkeeper.Lease) {
	time.Sleep(time.Until(l.ExpiresAt) + 50*time.Millisecond)
}
