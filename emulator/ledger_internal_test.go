package emulator

import (
	"strconv"
	"testing"
	"time"
)

// TestLedger_RetryAfterBounded checks that the Retry-After promises a client can make the
// emulator keep are bounded (docs/design.md, "Resource bounds"): past 10,000 a new one is
// not kept, unless promises already passed can be swept to make room.
func TestLedger_RetryAfterBounded(t *testing.T) {
	if maxRetryKeys != 10000 {
		t.Fatalf("maxRetryKeys = %d, want the documented 10,000", maxRetryKeys)
	}
	now := time.Now()
	key := func(i int) string { return "refresh:auth_" + strconv.Itoa(i) }

	t.Run("Full", func(t *testing.T) {
		l := newLedger(10)
		for i := range maxRetryKeys {
			l.promiseRetryAfter(key(i), now.Add(time.Hour), now)
		}
		if got := len(l.retryAfter); got != maxRetryKeys {
			t.Fatalf("%d promises kept, want %d", got, maxRetryKeys)
		}
		l.promiseRetryAfter("one-too-many", now.Add(time.Hour), now)
		if got := len(l.retryAfter); got != maxRetryKeys {
			t.Errorf("%d promises kept after one too many, want %d", got, maxRetryKeys)
		}
		if _, ok := l.retryAfter["one-too-many"]; ok {
			t.Error("the promise past the bound was kept")
		}
		if _, ok := l.retryAfter[key(0)]; !ok {
			t.Error("a pending promise was dropped to make room")
		}
		// A promise that was not kept is not enforced.
		l.checkRetry("one-too-many", "", now)
		if len(l.violations) != 0 {
			t.Errorf("violations %v, want none", l.violations)
		}
	})

	t.Run("PassedAreSwept", func(t *testing.T) {
		l := newLedger(10)
		for i := range maxRetryKeys {
			until := now.Add(time.Hour)
			if i%2 == 0 {
				until = now.Add(time.Minute)
			}
			l.promiseRetryAfter(key(i), until, now)
		}
		later := now.Add(2 * time.Minute) // the even promises have passed
		l.promiseRetryAfter("new", later.Add(time.Second), later)
		if got, want := len(l.retryAfter), maxRetryKeys/2+1; got != want {
			t.Errorf("%d promises kept after the sweep, want %d", got, want)
		}
		if _, ok := l.retryAfter["new"]; !ok {
			t.Error("the new promise was not kept although passed ones could be swept")
		}
		for _, i := range []int{0, 1, maxRetryKeys - 2, maxRetryKeys - 1} {
			_, ok := l.retryAfter[key(i)]
			if pending := i%2 == 1; ok != pending {
				t.Errorf("promise %d kept = %v, want %v (kept only while pending)", i, ok, pending)
			}
		}
	})
}
