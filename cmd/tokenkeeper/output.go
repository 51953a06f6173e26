package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// This file holds what the admin commands share to print: JSON, tables and times.

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// table writes rows under a header, aligned with a tabwriter; with no rows it writes
// "(none)" under the header.
type table struct {
	tw   *tabwriter.Writer
	rows int
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	return t
}

// row adds a row. Cells are made safe for a terminal: control characters (which a
// provider's error message might hold) print as spaces, and an empty cell as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = orDash(cleanCell(c))
	}
	t.rows++
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if t.rows == 0 {
		fmt.Fprintln(t.tw, "(none)")
	}
	return t.tw.Flush()
}

// cleanCell replaces control characters (tabs and newlines included, which would break
// the table) with spaces.
func cleanCell(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// relTime writes t relative to now: "in 12m", "3h ago", or "-" for the zero time.
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d >= 0 {
		return "in " + roughDuration(d)
	}
	return roughDuration(-d) + " ago"
}

// roughDuration writes d to one or two units: 45s, 12m, 3h20m, 5d.
func roughDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d < 2*day:
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dd", d/day)
}

// stamp writes t in RFC 3339 UTC to the second, or "-" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// deref returns *t, or the zero time for nil.
func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// printConnections writes connections (the HTTP API's JSON objects, whether read from
// the store or from a service) as a table, with times relative to now.
func printConnections(w io.Writer, list []*httpapi.Connection, now time.Time) error {
	t := newTable(w, "ID", "STATE", "SUBJECT", "EXPIRES", "LAST REFRESH", "NEXT REFRESH", "LAST ERROR")
	for _, c := range list {
		state := string(c.State)
		if c.Degraded {
			state += " (degraded)"
		}
		t.row(string(c.ID), state, c.Subject, relTime(deref(c.AccessTokenExpiresAt), now),
			relTime(deref(c.LastRefreshAt), now), relTime(deref(c.NextRefreshAt), now), c.LastError)
	}
	return t.flush()
}

// printConnection writes one connection as "name: value" lines.
func printConnection(w io.Writer, c *httpapi.Connection, now time.Time) error {
	at := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return stamp(*p) + " (" + relTime(*p, now) + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, orDash(cleanCell(value))) }
	line("id", string(c.ID))
	line("state", string(c.State))
	line("provider", c.Provider)
	line("subject", c.Subject)
	line("scopes", strings.Join(c.Scopes, " "))
	line("token expires", at(c.AccessTokenExpiresAt))
	line("last refresh", at(c.LastRefreshAt))
	line("next refresh", at(c.NextRefreshAt))
	line("degraded since", at(c.DegradedSince))
	line("last error", c.LastError)
	line("created", at(&c.CreatedAt))
	line("updated", at(&c.UpdatedAt))
	line("generation", strconv.FormatInt(c.Generation, 10))
	keys := make([]string, 0, len(c.Metadata))
	for k := range c.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("metadata "+k, c.Metadata[k])
	}
	return tw.Flush()
}
