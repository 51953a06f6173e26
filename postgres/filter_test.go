package postgres_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/postgres"
)

// TestListQuery_Plans: on a table of 20,000 connections with up-to-date
// statistics, each listing the keeper, retention and the API make reads an
// index, never the whole table: the keep-alive and refresh-schedule scans
// and the retention query select a few rows out of many.
func TestListQuery_Plans(t *testing.T) {
	s, _ := open(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	// c00000..c19999, active and refreshed a minute ago, planned in i
	// minutes; the first 5 have not been refreshed for 30 days; every
	// 2,000th is disconnected, half of those written 90 days ago.
	_, err := s.Pool().Exec(t.Context(), `
		INSERT INTO connections (id, provider, subject, state, degraded_since, generation,
			created_at, updated_at, last_refresh_at, next_refresh_at, last_error,
			access_token_key, refresh_token_key, token_expiry, token_expires_at, token_scope,
			pending_since, pending_owner, pending_unknown)
		SELECT format('c%s', lpad(i::text, 5, '0')), 'pleo', '',
			CASE WHEN i % 2000 = 7 THEN 'disconnected' ELSE 'active' END, '-infinity', 1,
			$1::timestamptz - interval '60 days',
			CASE WHEN i % 4000 = 7 THEN $1::timestamptz - interval '90 days' ELSE $1::timestamptz END,
			CASE WHEN i < 5 THEN $1::timestamptz - interval '30 days' ELSE $1::timestamptz - interval '1 minute' END,
			$1::timestamptz + i * interval '1 minute', '',
			'', '', '-infinity', '-infinity', '', '-infinity', '', false
		FROM generate_series(0, 19999) AS i`, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(t.Context(), `VACUUM ANALYZE connections`); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		filter tokenkeeper.ConnectionFilter
		want   []string // one of these indexes
	}{
		{"All", tokenkeeper.ConnectionFilter{}, []string{"connections_pkey"}},
		{"After", tokenkeeper.ConnectionFilter{After: "c15000"}, []string{"connections_pkey"}},
		{"IDPrefix", tokenkeeper.ConnectionFilter{IDPrefix: "c0123"}, []string{"connections_pkey"}},
		{"State", tokenkeeper.ConnectionFilter{State: tokenkeeper.StateDisconnected}, []string{"connections_state"}},
		{"KeepAlive", tokenkeeper.ConnectionFilter{
			State: tokenkeeper.StateActive, LastRefreshBefore: now.Add(-7 * 24 * time.Hour),
		}, []string{"connections_last_change_at"}},
		{"Schedule", tokenkeeper.ConnectionFilter{NextRefreshBefore: now.Add(3 * time.Minute)}, []string{"connections_next_refresh_at"}},
		{"Retention", tokenkeeper.ConnectionFilter{
			State: tokenkeeper.StateDisconnected, UpdatedBefore: now.Add(-30 * 24 * time.Hour), After: "c00007",
		}, []string{"connections_state_updated_at", "connections_state"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			query, args := postgres.ListQuery(tt.filter)
			rows, err := s.Pool().Query(t.Context(), "EXPLAIN "+query, args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if strings.Contains(text, "Seq Scan") || !slices.ContainsFunc(tt.want, func(index string) bool {
				return strings.Contains(text, " "+index+" ")
			}) {
				t.Errorf("plan of %+v does not use %s:\n%s", tt.filter, strings.Join(tt.want, " or "), text)
			}
		})
	}
}

// TestListConnections_Unicode: ids beyond ASCII are listed in byte order
// (COLLATE "C"), and an IDPrefix ending in any character selects exactly
// the ids that start with it.
func TestListConnections_Unicode(t *testing.T) {
	s, _ := open(t)
	ids := []tokenkeeper.ConnectionID{"a", "a\u007f", "a\u0080", "caf", "caf\u00e9", "caf\u00e9-2", "caf\u00ea", "caf\uffff", "caf\U00010000", "z"}
	for _, i := range []int{9, 3, 0, 6, 1, 8, 2, 5, 4, 7} {
		create(t, s, newRecord(ids[i]))
	}
	list := func(f tokenkeeper.ConnectionFilter) []tokenkeeper.ConnectionID {
		t.Helper()
		recs, err := s.ListConnections(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		var got []tokenkeeper.ConnectionID
		for _, r := range recs {
			got = append(got, r.ID)
		}
		return got
	}
	if got := list(tokenkeeper.ConnectionFilter{}); !slices.Equal(got, ids) {
		t.Errorf("all ids = %q, want %q", got, ids)
	}
	for prefix, want := range map[string][]tokenkeeper.ConnectionID{
		"a\u007f":    {"a\u007f"},
		"caf\u00e9":  {"caf\u00e9", "caf\u00e9-2"},
		"caf\uffff":  {"caf\uffff"},
		"caf":        ids[3:9],
		"\U0010ffff": nil,
	} {
		if got := list(tokenkeeper.ConnectionFilter{IDPrefix: prefix}); !slices.Equal(got, want) {
			t.Errorf("IDPrefix %+q: ids %q, want %q", prefix, got, want)
		}
	}
	// Filters that no stored value can match select nothing; an After that
	// is not text is refused.
	for _, f := range []tokenkeeper.ConnectionFilter{{IDPrefix: "a\x00"}, {IDPrefix: "caf\xc3"}, {State: "active\x00"}} {
		if got := list(f); len(got) != 0 {
			t.Errorf("%+v: ids %q, want none", f, got)
		}
	}
	_, err := s.ListConnections(t.Context(), tokenkeeper.ConnectionFilter{After: "a\x00"})
	wantCode(t, fmt.Sprintf("After %+q", "a\x00"), err, tokenkeeper.CodeInvalid)
}
