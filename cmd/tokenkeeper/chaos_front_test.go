package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// gateFront stands between one replica and the emulator's token endpoint (the replica's
// --token-url): it passes every request to the emulator's handler in this process and
// records what it did, and it can hold a replica's requests back. It plays the network:
//
//   - Recording gives the test the provider's side of every refresh: which replica sent
//     it, when, with which refresh token (as a hash), and what it rotated. From that the
//     test checks that every expiry got exactly one refresh, and when.
//   - Holding (a closed gate) keeps a replica's requests from reaching the provider,
//     which lets a test choose where a SIGKILL or SIGSTOP lands relative to the
//     provider: a held request was sent by the replica, and never arrived. A held
//     request is never passed on: it ends when the replica's connection does (the
//     process died), or is cut (the network lost it) by abortHeld.
type gateFront struct {
	c   *cluster
	i   int
	srv *httptest.Server

	mu       sync.Mutex
	closed   bool
	inflight int           // requests being processed by the emulator
	held     int           // requests held at the closed gate
	abort    chan struct{} // closed by abortHeld: held requests are cut
}

// tokenEvent is one request that reached the emulator's token endpoint.
type tokenEvent struct {
	replica   int
	owner     string // the replica's keeper at the time
	grant     string
	presented string // hash of the refresh token presented
	chain     int    // the token family (one per connect), -1 if unknown
	at, done  time.Time
	status    int
	// dropped: the test told the emulator to lose this response after commit.
	dropped bool
	newRT   string // hashes of what a 200 carried
	newAT   string
}

// rotated reports whether the request rotated the family's tokens at the provider.
func (e tokenEvent) rotated() bool {
	return e.grant == "refresh_token" && (e.status == http.StatusOK || e.dropped)
}

// tokenLog is every tokenEvent, and the token families they form.
type tokenLog struct {
	mu      sync.Mutex
	events  []tokenEvent
	rtChain map[string]int
	atChain map[string]int
	chains  int
}

func hashToken(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// chainOfRT returns the family of a refresh token's hash, or -1.
func (l *tokenLog) chainOfRT(h string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.rtChain[h]; ok {
		return c
	}
	return -1
}

// chainOfAT returns the family of an access token's hash, or -1.
func (l *tokenLog) chainOfAT(h string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.atChain[h]; ok {
		return c
	}
	return -1
}

func (l *tokenLog) add(e tokenEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rtChain == nil {
		l.rtChain, l.atChain = map[string]int{}, map[string]int{}
	}
	switch {
	case e.grant == "authorization_code" && e.status == http.StatusOK:
		e.chain = l.chains
		l.chains++
	case e.grant == "refresh_token":
		e.chain = -1
		if c, ok := l.rtChain[e.presented]; ok {
			e.chain = c
		}
	default:
		e.chain = -1
	}
	if e.status == http.StatusOK && e.chain >= 0 {
		if e.newRT != "" {
			l.rtChain[e.newRT] = e.chain
		}
		l.atChain[e.newAT] = e.chain
	}
	l.events = append(l.events, e)
}

func (l *tokenLog) snapshot() []tokenEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tokenEvent(nil), l.events...)
}

func newGateFront(c *cluster, i int) *gateFront {
	f := &gateFront{c: c, i: i, abort: make(chan struct{})}
	f.srv = httptest.NewServer(f)
	return f
}

// closeGate holds the replica's next requests.
func (f *gateFront) closeGate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

// openGate passes requests on again. Requests held meanwhile stay held.
func (f *gateFront) openGate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = false
}

// abortHeld cuts the connection of every request held so far, without passing it on.
func (f *gateFront) abortHeld() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.abort)
	f.abort = make(chan struct{})
}

// counts returns the requests being processed and held.
func (f *gateFront) counts() (inflight, held int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight, f.held
}

func (f *gateFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	f.mu.Lock()
	if f.closed {
		f.held++
		abort := f.abort
		f.mu.Unlock()
		defer func() { f.mu.Lock(); f.held--; f.mu.Unlock() }()
		select {
		case <-r.Context().Done(): // the replica went away: the request never arrived
			return
		case <-abort: // lost in the network
			panic(http.ErrAbortHandler)
		}
	}
	f.inflight++
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inflight--; f.mu.Unlock() }()

	ev := tokenEvent{replica: f.i, owner: f.c.replicas[f.i].currentOwner(), grant: form.Get("grant_type"),
		presented: hashToken(form.Get("refresh_token")), at: time.Now()}
	drop := ev.grant == "refresh_token" && f.c.takeDrop(ev.presented)
	rec := &capture{ResponseWriter: w}
	defer func() {
		p := recover()
		ev.done, ev.status, ev.dropped = time.Now(), rec.status, drop
		if rec.status == http.StatusOK {
			var tr struct {
				AccessToken  string `json:"access_token"`
				RefreshToken string `json:"refresh_token"`
			}
			if json.Unmarshal(rec.body.Bytes(), &tr) == nil {
				ev.newAT, ev.newRT = hashToken(tr.AccessToken), hashToken(tr.RefreshToken)
			}
		}
		f.c.tokens.add(ev)
		if p != nil {
			panic(p)
		}
	}()
	f.c.forward(rec, r, drop)
}

// forward passes r to the emulator. With drop, the emulator is told to lose this
// response after committing the refresh (its own drop_after_commit fault, so that its
// ledger knows the client never heard), with no other token request inside the emulator
// meanwhile: the fault script is global, and must be drawn by this request alone.
func (c *cluster) forward(w http.ResponseWriter, r *http.Request, drop bool) {
	if !drop {
		c.emuMu.RLock()
		defer c.emuMu.RUnlock()
		c.emuH.ServeHTTP(w, r)
		return
	}
	c.emuMu.Lock()
	defer c.emuMu.Unlock()
	if err := c.emu.SetFaults(emulator.Faults{emulator.EndpointToken: {Script: []string{emulator.FaultDropAfterCommit}}}); err != nil {
		panic(err)
	}
	defer c.emu.SetFaults(nil)
	c.emuH.ServeHTTP(w, r)
}

// capture keeps a copy of the status and body written.
type capture struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}
