package keeper

import "testing"

// Every class of token request has its outcome label; the ones the
// emulator cannot produce (a refused connection, another 4xx) are pinned
// here.
func TestClass_Outcome(t *testing.T) {
	for c, want := range map[class]string{
		classOK:       "ok",
		classDead:     "invalid_grant",
		classClient:   "client_rejected",
		classNotSent:  "transient",
		classBusy:     "transient",
		classServer:   "transient",
		classLost:     "lost",
		classRejected: "rejected",
	} {
		if got := c.outcome(); got != want {
			t.Errorf("%s: outcome %q, want %q", c, got, want)
		}
	}
}
