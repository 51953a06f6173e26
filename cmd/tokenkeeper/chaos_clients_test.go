package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// notePromise records the expires_at served with an access token, and fails if another
// replica served the same token with another promise.
func (c *cluster) notePromise(conn, h string, at time.Time) {
	c.promMu.Lock()
	defer c.promMu.Unlock()
	if prev, ok := c.promises[h]; ok && !prev.Equal(at) {
		c.fail("%s: one access token served with expires_at %s and %s", conn, prev, at)
		return
	}
	c.promises[h] = at
}

func (c *cluster) fail(format string, args ...any) {
	if c.failures.Add(1) <= 20 {
		c.failMu.Lock()
		c.failed = append(c.failed, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
		c.failMu.Unlock()
	}
}

// lost reports whether conn's family was told to lose a response (and so may end).
func (c *cluster) lost(conn string) bool {
	c.dropMu.Lock()
	defer c.dropMu.Unlock()
	_, ok := c.dropped[c.connChain[conn]]
	return ok
}

// takeDrop reports whether the refresh presenting the refresh token hashed h is to lose
// its response, and marks its family as dropped.
func (c *cluster) takeDrop(h string) bool {
	chain := c.tokens.chainOfRT(h)
	c.dropMu.Lock()
	defer c.dropMu.Unlock()
	if chain < 0 || !c.dropChains[chain] || time.Now().Before(c.dropFrom) {
		return false
	}
	if _, done := c.dropped[chain]; done {
		return false
	}
	c.dropped[chain] = time.Now()
	return true
}

// runClients runs o.clients clients until ctx ends. They go through the connections in
// turn, so that every connection is asked for every second or so and stays hot (a
// connection nobody asks for is refreshed on demand, not at its expiry), each call on a
// random replica: a token, used at once on the emulator's API (if the clock is still
// inside its promise; otherwise it asks again), or a call through the replica's proxy.
// A request that failed because its replica died (no answer, or a 503) is retried on
// another replica, as a load balancer would.
func (c *cluster) runClients(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	var next atomic.Int64
	for n := range c.o.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			for ctx.Err() == nil {
				c.call(rng, c.ids[int(next.Add(1))%len(c.ids)], rng.IntN(3) == 0)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(300+rng.IntN(600)) * time.Millisecond):
				}
			}
		})
	}
	return &wg
}

func (c *cluster) call(rng *rand.Rand, conn string, proxy bool) {
	c.calls.Add(1)
	if proxy {
		c.proxyCalls.Add(1)
	} else {
		c.tokenCalls.Add(1)
	}
	deadline := time.Now().Add(30 * time.Second)
	last := -1
	for attempt := 0; ; attempt++ {
		if time.Now().After(deadline) {
			c.fail("%s: no success in 30s of retries", conn)
			return
		}
		ri := rng.IntN(len(c.replicas))
		for k := 0; k < len(c.replicas) && (ri == last || c.avoid[ri].Load()); k++ {
			ri = (ri + 1) % len(c.replicas)
		}
		last = ri
		r := c.replicas[ri]
		c.busy[ri].Add(1)
		done := sync.OnceFunc(func() { c.busy[ri].Add(-1) })
		if proxy {
			code, data, err := c.do("GET", r.base+"/v1/connections/"+conn+"/proxy/v2/employees", c.key, nil)
			done()
			switch {
			case err != nil:
				c.deadRetries.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			case code == http.StatusServiceUnavailable:
				c.noteUnavailable()
				time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
				continue
			case code == http.StatusOK:
				c.noteServed()
			case (code == http.StatusConflict || code == http.StatusUnauthorized) && c.lost(conn):
				c.lostAnswers.Add(1)
			default:
				c.fail("%s via replica %d: GET proxy/v2/employees: %d %.200s", conn, ri, code, data)
			}
			return
		}
		var tr tokenResponse
		code, data, err := c.do("POST", r.base+"/v1/connections/"+conn+"/token", c.key, &tr)
		done()
		switch {
		case err != nil:
			c.deadRetries.Add(1)
			time.Sleep(20 * time.Millisecond)
			continue
		case code == http.StatusServiceUnavailable:
			c.noteUnavailable()
			time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
			continue
		case code == http.StatusConflict && c.lost(conn):
			c.lostAnswers.Add(1)
			return
		case code != http.StatusOK || tr.AccessToken == "":
			c.fail("%s via replica %d: POST token: %d %.200s", conn, ri, code, data)
			return
		}
		h := hashToken(tr.AccessToken)
		c.notePromise(conn, h, tr.ExpiresAt)
		if !time.Now().Before(tr.ExpiresAt) {
			continue // past its promise already (a slow answer): a client asks again
		}
		code, data, err = c.do("GET", c.emu.APIURL+"/v2/employees", tr.AccessToken, nil)
		switch {
		case err == nil && code == http.StatusOK:
			c.noteServed()
		case code == http.StatusUnauthorized && c.lost(conn):
			c.lostAnswers.Add(1)
		default:
			c.fail("%s via replica %d: GET /v2/employees at the emulator with the token served: %d %.200s %v", conn, ri, code, data, err)
		}
		return
	}
}

func (c *cluster) noteServed() {
	c.promMu.Lock()
	c.served = append(c.served, time.Now())
	c.promMu.Unlock()
}

// servedBetween counts the calls that succeeded between from and to.
func (c *cluster) servedBetween(from, to time.Time) int {
	c.promMu.Lock()
	defer c.promMu.Unlock()
	n := 0
	for _, at := range c.served {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// waitReady waits up to d for every replica's /readyz to answer 200 with status ("ok",
// or "degraded" while the database is away), and returns how many did.
func (c *cluster) waitReady(status string, d time.Duration) int {
	deadline := time.Now().Add(d)
	done := make([]bool, len(c.replicas))
	n := 0
	for n < len(c.replicas) && time.Now().Before(deadline) {
		for i, r := range c.replicas {
			if done[i] {
				continue
			}
			var h struct{ Status string }
			code, _, err := c.do("GET", r.base+"/readyz", "", &h)
			if err == nil && code == http.StatusOK && h.Status == status {
				done[i] = true
				n++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

func (c *cluster) noteUnavailable() {
	c.unavailRetries.Add(1)
	c.promMu.Lock()
	c.unavail = append(c.unavail, time.Now())
	c.promMu.Unlock()
}
