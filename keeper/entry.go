package keeper

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// entry is the in-memory state of one connection. Nothing in it is shared
// with other connections: the hot path reads cur and lastUsed atomically.
type entry struct {
	id       tokenkeeper.ConnectionID
	cur      atomic.Pointer[cached]
	lastUsed atomic.Int64 // unix nanos on the keeper clock; 0 never used
	// used is set by the hot path (which reads no clock) and turned into a
	// lastUsed time by the scheduler.
	used atomic.Bool
	// timed: arm each published token's live flag with a timer (the keeper
	// runs on the real clock).
	timed bool
	// dead is set, under mu, when the entry is evicted from the keeper's
	// map (see evict): no flight starts on it and no use begins on it any
	// more; whoever holds it takes a new one from the map.
	dead atomic.Bool

	mu     sync.Mutex
	flight *flight // the refresh in flight, nil if none

	// pubMu guards floor: the version of the latest write of the record
	// this process has published. A slower writer (a flight that read the
	// record before a Disconnect) cannot publish an older view over it.
	pubMu sync.Mutex
	floor version
	// wake, guarded by pubMu, is closed when the store's change feed
	// reports a write of the connection (see changed).
	wake chan struct{}

	uses uses // the keeper's own HTTP calls in flight, per token

	refusal refusal // the last token handed out in place of a refused one
}

// cached is an immutable snapshot of a connection's current token.
type cached struct {
	token      tokenkeeper.AccessToken
	expiry     time.Time // the provider's expiry
	lifetime   time.Duration
	generation int64
	ver        version

	// live is true from publication until liveMargin before the promise
	// ends, cleared by a timer: the hot path checks it instead of reading
	// the clock. Only for keepers on the real clock.
	live  atomic.Bool
	timer *time.Timer // guarded by entry.pubMu
}

// liveMargin is how long before the promise ends a token's live flag is
// cleared, so that a timer firing a little late still clears it in time.
// After that the hot path compares with the clock.
const liveMargin = 10 * time.Millisecond

// flight is one shared attempt to bring a connection's token up to date.
// Every waiter gets the same result.
type flight struct {
	done chan struct{}
	// urgent is closed when a caller proved the current token dead (a 401)
	// or an operator forced a refresh: the flight stops honouring the
	// promise of the token it replaces.
	urgent     chan struct{}
	urgentOnce sync.Once
	// stale holds the access tokens proven dead while the flight ran.
	staleMu   sync.Mutex
	stale     []tokenkeeper.Secret
	force     bool // operator: refresh whatever the current token is
	keepAlive bool // refresh even if the token is fresh, after its promise
	// refused: the refresh under way is the one a refusal of the current
	// token asked for. kept: the flight declined that refresh
	// (Config.RejectCooldown) and its result is the refused token itself.
	// Written by the flight's goroutine only; kept is read after done.
	refused, kept bool

	c   *cached // the result, if err is nil
	err error
	// heldWait is how long the flight waited for another owner's lease.
	// Written by the flight's goroutine only; read after done.
	heldWait time.Duration
}

func newFlight() *flight {
	return &flight{done: make(chan struct{}), urgent: make(chan struct{})}
}

// markStale records that stale was seen dead and hurries the flight.
func (f *flight) markStale(stale tokenkeeper.Secret) {
	f.staleMu.Lock()
	f.stale = append(f.stale, stale)
	f.staleMu.Unlock()
	f.urgentOnce.Do(func() { close(f.urgent) })
}

// isStale reports whether access was proven dead during this flight.
func (f *flight) isStale(access tokenkeeper.Secret) bool {
	f.staleMu.Lock()
	defer f.staleMu.Unlock()
	for _, s := range f.stale {
		if s.Equal(access) {
			return true
		}
	}
	return false
}

// version orders the writes of a record: by the record's creation (a
// connection deleted and created again starts at generation 1), then by
// generation.
type version struct {
	created int64 // CreatedAt, unix nanos
	gen     int64
}

func versionOf(rec *tokenkeeper.Record) version {
	return version{created: rec.CreatedAt.UnixNano(), gen: rec.Generation}
}

func (v version) before(o version) bool {
	if v.created != o.created {
		return v.created < o.created
	}
	return v.gen < o.gen
}

// publish makes c the cached token (nil: none), as of the record's version
// v, unless a later version is already published.
func (e *entry) publish(c *cached, v version) {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if v.before(e.floor) {
		return
	}
	e.floor = v
	if c == nil {
		e.dropLocked()
		return
	}
	old := e.cur.Swap(c)
	if old == c {
		return
	}
	if old != nil && old.timer != nil {
		old.timer.Stop()
		old.live.Store(false)
	}
	if e.timed {
		if d := time.Until(c.token.ExpiresAt) - liveMargin; d > 0 {
			c.live.Store(true)
			c.timer = time.AfterFunc(d, func() { c.live.Store(false) })
		}
	}
}

// touch records a use at now. It writes only when the recorded time is a
// second old, so that parallel callers of one hot connection do not fight
// over the cache line.
func (e *entry) touch(now time.Time) {
	n := now.UnixNano()
	if n-e.lastUsed.Load() > int64(time.Second) {
		e.lastUsed.Store(n)
	}
}

// entry returns the in-memory state of id, creating it on first use.
func (k *Keeper) entry(id tokenkeeper.ConnectionID) *entry {
	for {
		v, ok := k.entries.Load(id)
		if !ok {
			v, _ = k.entries.LoadOrStore(id, &entry{id: id, timed: k.timed})
		}
		e := v.(*entry)
		if !e.dead.Load() {
			return e
		}
		k.entries.CompareAndDelete(id, e) // evicted, and not yet removed
	}
}

// evict removes e from the keeper's map if nothing is going on with it: no
// flight, and no HTTP call of the keeper's in flight with its token. It
// reports whether it did. Memory then holds only the connections in use:
// an entry made for a keep-alive, or one nobody asked for a token for a
// while, does not stay.
func (k *Keeper) evict(e *entry) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flight != nil || !e.uses.retire() {
		return false
	}
	e.dead.Store(true)
	e.pubMu.Lock()
	e.dropLocked()
	e.wakeLocked()
	e.pubMu.Unlock()
	k.entries.CompareAndDelete(e.id, e)
	return true
}

// uses counts the keeper's own HTTP calls in flight per token generation,
// so that a refresh can wait for them before it kills their token, and
// refuse new calls with a token being replaced.
type uses struct {
	mu      sync.Mutex
	count   map[int64]int
	closed  int64 // calls with a generation <= closed are refused
	drained chan struct{}
}

// retire refuses every call from now on, if none is in flight, and
// reports whether it did.
func (u *uses) retire() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.count) > 0 {
		return false
	}
	u.closed = math.MaxInt64
	return true
}

// begin registers a call with the token of generation gen. It returns false
// if a refresh is replacing that token (or the entry was evicted): get a
// new one.
func (u *uses) begin(gen int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if gen <= u.closed {
		return false
	}
	if u.count == nil {
		u.count = make(map[int64]int)
	}
	u.count[gen]++
	return true
}

// end unregisters a call begun with gen.
func (u *uses) end(gen int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.count[gen]--
	if u.count[gen] <= 0 {
		delete(u.count, gen)
		if gen <= u.closed && u.drained != nil && u.inUseLocked() == 0 {
			close(u.drained)
			u.drained = nil
		}
	}
}

func (u *uses) inUseLocked() int {
	n := 0
	for g, c := range u.count {
		if g <= u.closed {
			n += c
		}
	}
	return n
}

// close refuses new calls with generations up to gen and returns a channel
// closed once the calls already in flight with them have ended.
func (u *uses) close(gen int64) <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if gen > u.closed {
		u.closed = gen
	}
	ch := make(chan struct{})
	if u.inUseLocked() == 0 {
		close(ch)
		return ch
	}
	if u.drained != nil {
		close(u.drained) // a newer waiter replaces the older one
	}
	u.drained = ch
	return ch
}
