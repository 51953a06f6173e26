package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// chaosExpect is what a run must end with.
type chaosExpect struct {
	// maxGap bounds the time between two refreshes of a connection (and from the last
	// one to the end of the load): a connection that clients keep asking for must not
	// be left unrefreshed. Each kill of a replica that held the connection's lease
	// in between adds killGapAllowance.
	maxGap time.Duration
	// unavailable, if set, says when a 503 is allowed; nil allows one whenever (a
	// replica dying mid-request).
	unavailable func(time.Time) bool
	// errorLogs allows ERROR lines in the replicas' logs (the database was down).
	errorLogs bool
}

// check stops the replicas and checks everything a run must end with: no client request
// failed, the ledger holds exactly the violations the dropped responses explain, every
// expiry of every connection got exactly one refresh and none came before the promise of
// the token it replaced, each family lost to a dropped response made exactly one more
// attempt, and every other connection is active.
func (c *cluster) check(loadEnd time.Time, want chaosExpect) {
	t := c.t
	t.Helper()
	c.stopAll()
	ok := true
	defer func() {
		if !ok {
			c.dumpLogs()
		}
	}()
	errorf := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(format, args...)
	}
	t.Logf("clients: %d calls (%d token+API, %d proxy); retried on another replica: %d after no answer, %d after a 503; %d answers for lost connections",
		c.calls.Load(), c.tokenCalls.Load(), c.proxyCalls.Load(), c.deadRetries.Load(), c.unavailRetries.Load(), c.lostAnswers.Load())
	if n := c.failures.Load(); n > 0 {
		c.failMu.Lock()
		errorf("%d client requests failed; the first:\n%s", n, strings.Join(c.failed, "\n"))
		c.failMu.Unlock()
	}
	if want.unavailable != nil {
		c.promMu.Lock()
		for _, at := range c.unavail {
			if !want.unavailable(at) {
				errorf("a 503 at %s, outside the window where one is expected", at.Format("15:04:05.000"))
				break
			}
		}
		c.promMu.Unlock()
	}

	// Which families lost a response, and so which connections may end.
	c.dropMu.Lock()
	droppedChains := map[int]bool{}
	for ch := range c.dropped {
		droppedChains[ch] = true
	}
	c.dropMu.Unlock()
	lostConns := map[string]bool{}
	for id, ch := range c.connChain {
		if droppedChains[ch] {
			lostConns[id] = true
		}
	}

	// The ledger: nothing, except one refresh_token_reuse per lost response, each
	// flagged as following a lost response.
	rep := c.emu.Report()
	wantCounts := map[string]int{}
	if len(lostConns) > 0 {
		wantCounts[emulator.RuleRefreshTokenReuse] = len(lostConns)
	}
	if !mapsEqual(rep.ViolationCounts, wantCounts) || rep.LostResponseViolations != len(lostConns) {
		errorf("the emulator recorded violations %v (%d after a lost response); want %v, all after a lost response",
			rep.ViolationCounts, rep.LostResponseViolations, wantCounts)
	}
	revoked := 0
	for _, a := range rep.Authorisations {
		if a.State != "active" {
			revoked++
		}
	}
	if revoked != len(lostConns) {
		errorf("%d authorisations are revoked at the emulator; want %d (the dropped responses)", revoked, len(lostConns))
	}

	// Refreshes, family by family, as the provider saw them.
	events := c.tokens.snapshot()
	byChain := map[int][]tokenEvent{}
	issued := map[int]tokenEvent{}
	unknown := 0
	for _, e := range events {
		switch {
		case e.grant == "authorization_code" && e.status == http.StatusOK:
			issued[e.chain] = e
		case e.grant == "refresh_token" && e.chain < 0:
			unknown++
		case e.grant == "refresh_token":
			byChain[e.chain] = append(byChain[e.chain], e)
		}
	}
	if unknown > 0 {
		errorf("%d refresh requests presented a refresh token the provider never issued through the fronts", unknown)
	}
	minPromise := min(time.Duration(0.75*float64(c.o.tokenTTL)), c.o.tokenTTL-2*min(chaosDrainGrace, c.o.tokenTTL/4))
	var perChain []int
	total, replicaRotations := 0, make([]int, len(c.replicas))
	minMargin, maxGap, gapAt, excess := time.Duration(1<<62), time.Duration(0), "", time.Duration(0)

	for _, id := range c.ids {
		ch := c.connChain[id]
		evs := byChain[ch]
		sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
		rotations := 0
		prev := issued[ch]
		seen := map[string]int{}
		for k, e := range evs {
			seen[e.presented]++
			if lostConns[id] && e.dropped {
				// Exactly one more attempt, with the same refresh token, answered
				// invalid_grant; then nothing.
				rest := evs[k+1:]
				if len(rest) != 1 || rest[0].presented != e.presented || rest[0].status != http.StatusBadRequest {
					var desc []string
					for _, r := range rest {
						desc = append(desc, fmt.Sprintf("replica %d %d same-token=%v", r.replica, r.status, r.presented == e.presented))
					}
					errorf("%s: after its lost response the provider saw %d requests %v; want exactly one more attempt with the same refresh token, answered 400", id, len(rest), desc)
				}
				rotations++
				total++
				replicaRotations[e.replica]++
				break
			}
			if e.status != http.StatusOK {
				errorf("%s: a refresh by replica %d (%s) was answered %d", id, e.replica, e.owner, e.status)
				continue
			}
			// Not before the promise of the token it replaced: the promise served to
			// clients, or, for a token no client saw, the earliest the keeper plans.
			c.promMu.Lock()
			promise, ok := c.promises[prev.newAT]
			c.promMu.Unlock()
			if !ok {
				promise = prev.at.Add(minPromise)
			}
			if m := e.at.Sub(promise); m < minMargin {
				minMargin = m
			}
			if e.at.Before(promise) {
				errorf("%s: refreshed by replica %d (%s) at %s, before the promise %s of the token it replaced",
					id, e.replica, e.owner, e.at.Format("15:04:05.000"), promise.Format("15:04:05.000"))
			}
			if g := e.at.Sub(prev.at); g > maxGap {
				maxGap = g
			}
			if x := e.at.Sub(prev.at) - want.maxGap - time.Duration(c.killsOn(id, prev.at, e.at))*killGapAllowance; x > excess {
				excess, gapAt = x, fmt.Sprintf("%s from %s to %s (replica %d, %s; the replaced token's promise %s, seen %v), %d kills of its lease holder", id, prev.at.Format("15:04:05.000"),
					e.at.Format("15:04:05.000"), e.replica, e.owner, promise.Format("15:04:05.000"), ok, c.killsOn(id, prev.at, e.at))
			}
			rotations++
			total++
			replicaRotations[e.replica]++
			prev = e
		}
		for h, n := range seen {
			if n > 1 && !(lostConns[id] && n == 2) {
				errorf("%s: one refresh token (%s) was presented %d times", id, h[:6], n)
			}
		}
		if !lostConns[id] {
			if g := loadEnd.Sub(prev.at); g > maxGap {
				maxGap = g
			}
			if x := loadEnd.Sub(prev.at) - want.maxGap - time.Duration(c.killsOn(id, prev.at, loadEnd))*killGapAllowance; x > excess {
				excess, gapAt = x, fmt.Sprintf("%s from %s to the end of the load, %d kills of its lease holder", id, prev.at.Format("15:04:05.000"), c.killsOn(id, prev.at, loadEnd))
			}
		}
		perChain = append(perChain, rotations)
	}
	var perAuth []int
	emuTotal := 0
	for _, a := range rep.Authorisations {
		perAuth = append(perAuth, a.Refreshes)
		emuTotal += a.Refreshes
	}
	slices.Sort(perChain)
	slices.Sort(perAuth)
	if !slices.Equal(perChain, perAuth) {
		errorf("refreshes per connection seen at the fronts %v differ from the emulator's per authorisation %v", histogram(perChain), histogram(perAuth))
	}
	t.Logf("refreshes: %d at the emulator (%d seen at the fronts), by replica %v; connections by refresh count %v; earliest refresh %s after its promise; longest gap %s",
		emuTotal, total, replicaRotations, histogram(perChain), minMargin.Round(time.Millisecond), maxGap.Round(time.Millisecond))
	if want.maxGap > 0 && excess > 0 {
		errorf("a connection went %s longer without a refresh than allowed (%s); want at most %s, plus %s per kill of its lease holder",
			excess.Round(time.Millisecond), gapAt, want.maxGap, killGapAllowance)
	}

	// Every connection is active, but those that lost a response: reconnect_required.
	rows, err := c.db.Query(context.Background(), "SELECT id, state, last_error FROM connections")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for rows.Next() {
		var id, state, lastErr string
		if err := rows.Scan(&id, &state, &lastErr); err != nil {
			t.Fatal(err)
		}
		states[state]++
		want := "active"
		if lostConns[id] {
			want = "reconnect_required"
			if !strings.Contains(lastErr, "lost") {
				errorf("%s: reconnect_required with last error %q; want the reason to say the response was lost", id, lastErr)
			}
		}
		if state != want {
			errorf("%s: state %s (last error %q); want %s", id, state, lastErr, want)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	t.Logf("connections by state: %v", states)

	// The replicas' logs: no data race, no panic, and no error unless expected.
	ended := map[string]int{}
	for _, r := range c.replicas {
		logs := r.logs.String()
		if strings.Contains(logs, "DATA RACE") || strings.Contains(logs, "panic:") {
			errorf("replica %d logged a data race or a panic", r.i)
		}
		n := 0
		for line := range strings.Lines(logs) {
			if !strings.Contains(line, "level=ERROR") {
				continue
			}
			// A connection that lost a response ends with one error line, in one replica.
			_, conn, _ := strings.Cut(line, " connection=")
			conn, _, _ = strings.Cut(conn, " ")
			if strings.Contains(line, `msg="refresh: connection needs reconnecting"`) && lostConns[conn] {
				ended[conn]++
				continue
			}
			n++
		}
		if n > 0 {
			if want.errorLogs {
				t.Logf("replica %d logged %d errors (expected here)", r.i, n)
			} else {
				errorf("replica %d logged %d errors", r.i, n)
			}
		}
	}
	for id := range lostConns {
		if ended[id] != 1 {
			errorf("%s: %d replicas logged that it needs reconnecting; want exactly 1", id, ended[id])
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// histogram maps a count to how many have it.
func histogram(xs []int) map[int]int {
	h := map[int]int{}
	for _, x := range xs {
		h[x]++
	}
	return h
}
