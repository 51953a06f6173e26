package emulator

import (
	"fmt"
	"sync/atomic"
	"time"
)

// clock is wall-clock time plus an offset that only moves forward. Real time keeps
// flowing, so a client that honours Retry-After by sleeping sees it expire, and a test can
// jump over a token's lifetime without sleeping.
type clock struct {
	offset atomic.Int64 // nanoseconds
}

func (c *clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// MaxLifetime bounds every lifetime a [Config] may set (a refresh-token TTL plus its
// jitter included), and how far the clock may travel in all: far beyond any real token
// lifetime, and far from time.Duration's overflow.
const MaxLifetime = 100 * 365 * 24 * time.Hour

const maxOffset = MaxLifetime

func (c *clock) advance(d time.Duration) error {
	for {
		cur := c.offset.Load()
		if d > maxOffset-time.Duration(cur) {
			return fmt.Errorf("emulator: cannot advance the clock by %s: it may travel at most %s in all", d, maxOffset)
		}
		if c.offset.CompareAndSwap(cur, cur+int64(d)) {
			return nil
		}
	}
}

func (c *clock) reset() { c.offset.Store(0) }

// Now returns the emulator's current time.
func (e *Emulator) Now() time.Time { return e.clock.Now() }

// Advance moves the emulator's clock forward by d and returns the new time. It fails for a
// negative d (time never runs backwards, so an expiry once passed stays passed) and past a
// total travel of 100 years.
func (e *Emulator) Advance(d time.Duration) (time.Time, error) {
	if d < 0 {
		return time.Time{}, fmt.Errorf("emulator: cannot advance the clock by a negative duration %s", d)
	}
	if err := e.clock.advance(d); err != nil {
		return time.Time{}, err
	}
	return e.clock.Now(), nil
}
