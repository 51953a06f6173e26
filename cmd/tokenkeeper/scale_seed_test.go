package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// This file seeds the stores of the scale benchmarks (scale_bench_test.go) in bulk: rows
// written straight into the schema the stores create, each token sealed for its own row
// (the associated data binds a ciphertext to its connection id and field, so a
// ciphertext cannot be reused across rows).

// seedToken is one connection's token pair, in plaintext.
type seedToken struct{ access, refresh string }

// seedPlan says how the seeded rows look.
type seedPlan struct {
	n      int
	id     func(i int) string
	tokens func(i int) seedToken // nil: random strings (tokens never sent anywhere)
	// expired: the stored token is past its promise and its expiry, so the first token
	// call refreshes it; otherwise it is fresh for about an hour.
	expired bool
	// old: the connection is cold: its refresh token was last rotated 8 days ago, past
	// the keep-alive age (7 days), so the keep-alive scan refreshes every row, and its
	// access token expired then.
	old bool
	now time.Time
}

// sealedRow is one connection row, ready to write.
type sealedRow struct {
	id                                string
	access, refresh                   tokenkeeper.Sealed
	created, lastRefresh, nextRefresh time.Time
	expiry, expiresAt                 time.Time
}

// row builds row i of p, sealing its tokens under keys.
func (p seedPlan) row(keys *seal.Keyset, i int) (sealedRow, error) {
	id := p.id(i)
	tok := seedToken{access: rand.Text() + rand.Text()[:17], refresh: rand.Text() + rand.Text()[:17]}
	if p.tokens != nil {
		tok = p.tokens(i)
	}
	r := sealedRow{id: id}
	var err error
	if r.access, err = keys.Seal([]byte(tok.access), tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, id, tokenkeeper.FieldAccessToken)); err != nil {
		return r, err
	}
	if r.refresh, err = keys.Seal([]byte(tok.refresh), tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, id, tokenkeeper.FieldRefreshToken)); err != nil {
		return r, err
	}
	now := p.now.Truncate(time.Microsecond)
	if p.expired {
		// Issued 16 minutes ago with a 15-minute lifetime: past its promise and its expiry.
		r.created = now.Add(-16 * time.Minute)
		r.lastRefresh = r.created
		r.expiry = now.Add(-time.Minute)
		r.expiresAt = now.Add(-4 * time.Minute)
	} else {
		// Refreshed at some moment of the last six days (so no keep-alive is due), with a
		// token fresh for the next hour.
		r.created = now.Add(-30 * 24 * time.Hour)
		r.lastRefresh = now.Add(-time.Duration(i%(6*24*60)) * time.Minute)
		r.expiry = now.Add(time.Hour)
		r.expiresAt = now.Add(48 * time.Minute)
	}
	if p.old {
		// A cold connection: nobody asked for its token for 8 days, so its last refresh
		// and its 15-minute token are that old.
		r.lastRefresh = now.Add(-8*24*time.Hour - time.Duration(i%(12*60))*time.Minute)
		r.expiry = r.lastRefresh.Add(15 * time.Minute)
		r.expiresAt = r.lastRefresh.Add(12 * time.Minute)
	}
	r.nextRefresh = r.expiresAt.Add(time.Second)
	return r, nil
}

// seedStore writes p's rows into the store (sqlite:PATH or a postgres:// URL) whose
// schema `tokenkeeper migrate` has created.
func seedStore(t *testing.T, store string, keys *seal.Keyset, p seedPlan) {
	t.Helper()
	started := time.Now()
	kind, where, err := parseStore(store)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "sqlite" {
		err = seedSQLite(t.Context(), where, keys, p)
	} else {
		err = seedPostgres(t.Context(), where, keys, p)
	}
	if err != nil {
		t.Fatalf("seed %d connections: %v", p.n, err)
	}
	t.Logf("seeded %d connections into %s in %s", p.n, kind, time.Since(started).Round(time.Millisecond))
}

const seedColumns = `id, provider, subject, scopes, state, degraded_since, generation, created_at, updated_at,
	last_refresh_at, next_refresh_at, last_error, metadata, access_token, access_token_key,
	refresh_token, refresh_token_key, token_expiry, token_expires_at, token_scope,
	pending_since, pending_owner, pending_unknown`

// seedSubject is the emulator's first seeded company, the one AutoApprove consents for.
const seedSubject = "urn:pleo:company:8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a"

func seedSQLite(ctx context.Context, path string, keys *seal.Keyset, p seedPlan) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	const batch = 50_000
	us := func(t time.Time) int64 { return t.UnixMicro() }
	for start := 0; start < p.n; start += batch {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO connections (`+seedColumns+`) VALUES
			(?, 'custom', ?, NULL, 'active', 0, 1, ?, ?, ?, ?, '', NULL, ?, ?, ?, ?, ?, ?, '', 0, '', 0)`)
		if err != nil {
			tx.Rollback()
			return err
		}
		for i := start; i < min(start+batch, p.n); i++ {
			r, err := p.row(keys, i)
			if err != nil {
				tx.Rollback()
				return err
			}
			if _, err := stmt.ExecContext(ctx, r.id, seedSubject, us(r.created), us(r.lastRefresh), us(r.lastRefresh), us(r.nextRefresh),
				r.access.Ciphertext, r.access.KeyID, r.refresh.Ciphertext, r.refresh.KeyID, us(r.expiry), us(r.expiresAt)); err != nil {
				tx.Rollback()
				return err
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	_, err = db.ExecContext(ctx, "ANALYZE")
	return err
}

func seedPostgres(ctx context.Context, dbURL string, keys *seal.Keyset, p seedPlan) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	cols := strings.Fields(strings.ReplaceAll(seedColumns, ",", " "))
	never := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	at := func(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }
	i := 0
	var rowErr error
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"connections"}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		if i >= p.n {
			return nil, nil
		}
		r, err := p.row(keys, i)
		if err != nil {
			rowErr = err
			return nil, err
		}
		i++
		return []any{r.id, "custom", seedSubject, nil, "active", never, int64(1), at(r.created), at(r.lastRefresh),
			at(r.lastRefresh), at(r.nextRefresh), "", nil, r.access.Ciphertext, r.access.KeyID,
			r.refresh.Ciphertext, r.refresh.KeyID, at(r.expiry), at(r.expiresAt), "",
			never, "", false}, nil
	}))
	if rowErr != nil {
		return rowErr
	}
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "VACUUM ANALYZE connections")
	return err
}

// grantClient is the OAuth client the scale benchmarks register at the emulator.
var grantClient = emulator.Client{ID: "scale-client", Secret: "scale-secret-0123456789abcdef",
	RedirectURIs: []string{"http://127.0.0.1/oauth/callback"}, Name: "Scale"}

// emulatorGrants runs n authorization code flows (PKCE) against emu's handler in process,
// and returns each grant's token pair: what a connect flow would have stored.
func emulatorGrants(t *testing.T, emu *emulator.Emulator, n int) []seedToken {
	t.Helper()
	started := time.Now()
	h := emu.Handler()
	out := make([]seedToken, n)
	for i := range out {
		verifier := rand.Text() + rand.Text()
		sum := sha256.Sum256([]byte(verifier))
		q := url.Values{"response_type": {"code"}, "client_id": {grantClient.ID}, "redirect_uri": {grantClient.RedirectURIs[0]},
			"state": {rand.Text()}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/oauth/authorize?"+q.Encode(), nil))
		loc, err := url.Parse(rec.Header().Get("Location"))
		if err != nil || loc.Query().Get("code") == "" {
			t.Fatalf("grant %d: authorize answered %d, Location %q", i, rec.Code, rec.Header().Get("Location"))
		}
		form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
			"redirect_uri": {grantClient.RedirectURIs[0]}, "code_verifier": {verifier}}
		req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(grantClient.ID, grantClient.Secret)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var tok struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &tok) != nil || tok.RefreshToken == "" {
			t.Fatalf("grant %d: token exchange answered %d: %.200s", i, rec.Code, rec.Body.String())
		}
		out[i] = seedToken{access: tok.AccessToken, refresh: tok.RefreshToken}
	}
	t.Logf("%d emulator grants in %s", n, time.Since(started).Round(time.Millisecond))
	return out
}

// connID names seeded connection i.
func connID(i int) string { return fmt.Sprintf("conn-%07d", i) }
