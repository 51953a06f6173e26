package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// endpoint creates an endpoint at url or fails t.
func endpoint(t *testing.T, s outbox, url string) *tokenkeeper.WebhookEndpoint {
	t.Helper()
	e := &tokenkeeper.WebhookEndpoint{
		ID: tokenkeeper.NewWebhookEndpointID(), URL: url, Secret: sealed("key-1"), CreatedAt: now(),
	}
	if err := s.CreateWebhookEndpoint(t.Context(), e); err != nil {
		t.Fatalf("CreateWebhookEndpoint(%s): %v", url, err)
	}
	return e
}

// disable disables id or fails t.
func disable(t *testing.T, s outbox, id tokenkeeper.WebhookEndpointID) {
	t.Helper()
	if err := s.DisableWebhookEndpoint(t.Context(), id, now()); err != nil {
		t.Fatalf("DisableWebhookEndpoint(%s): %v", id, err)
	}
}

// listDeliveries returns ListDeliveries(f) or fails t.
func listDeliveries(t *testing.T, s outbox, f tokenkeeper.DeliveryFilter) []*tokenkeeper.Delivery {
	t.Helper()
	ds, err := s.ListDeliveries(t.Context(), f)
	if err != nil {
		t.Fatalf("ListDeliveries(%+v): %v", f, err)
	}
	return ds
}

// claim returns ClaimDeliveries or fails t.
func claim(t *testing.T, s outbox, owner string, at time.Time, ttl time.Duration, limit int) []*tokenkeeper.Delivery {
	t.Helper()
	ds, err := s.ClaimDeliveries(t.Context(), owner, at, ttl, limit)
	if err != nil {
		t.Fatalf("ClaimDeliveries(%s): %v", owner, err)
	}
	for _, d := range ds {
		if d.Claim.Owner != owner || d.Claim.Fence <= 0 || !d.Claim.ExpiresAt.After(time.Now().Add(-time.Minute)) {
			t.Errorf("claimed delivery %d has claim %+v, want owner %s, a positive fence, an expiry ahead", d.ID, d.Claim, owner)
		}
	}
	return ds
}

// finish records r for d under d's claim or fails t.
func finish(t *testing.T, s outbox, d *tokenkeeper.Delivery, r tokenkeeper.DeliveryResult) {
	t.Helper()
	if err := s.FinishAttempt(t.Context(), d.ID, d.Claim, r); err != nil {
		t.Fatalf("FinishAttempt(%d): %v", d.ID, err)
	}
}

// enqueue appends n events of conn to every endpoint and returns them.
func enqueue(t *testing.T, s outbox, n int) []*tokenkeeper.StoredEvent {
	t.Helper()
	var out []*tokenkeeper.StoredEvent
	for i := range n {
		e := event("c1", tokenkeeper.EventDegraded, fmt.Sprint(i))
		e.Time = now().Add(-time.Duration(n-i) * time.Millisecond)
		out = append(out, appendEvent(t, s, e, tokenkeeper.Fanout{AllEndpoints: true}))
	}
	return out
}

func webhookEndpointTests() []test {
	return []test{
		{"CreateGetList", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook?x=1")
			b := endpoint(t, s, "http://127.0.0.1:8080/hook")
			got, err := s.GetWebhookEndpoint(t.Context(), a.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "GetWebhookEndpoint", got, a)
			list, err := s.ListWebhookEndpoints(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "ListWebhookEndpoints", list, []*tokenkeeper.WebhookEndpoint{a, b})
		})},
		{"Conflict", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			again := *a
			again.URL = "https://b.example/hook"
			wantCode(t, s.CreateWebhookEndpoint(t.Context(), &again), tokenkeeper.CodeConflict)
		})},
		{"Invalid", withOutbox(func(t *testing.T, s outbox) {
			for name, e := range map[string]*tokenkeeper.WebhookEndpoint{
				"NoID":     {URL: "https://a.example", Secret: sealed("k")},
				"NoSecret": {ID: "we_1", URL: "https://a.example"},
				"Scheme":   {ID: "we_1", URL: "ftp://a.example", Secret: sealed("k")},
				"Userinfo": {ID: "we_1", URL: "https://u:p@a.example", Secret: sealed("k")},
				"NULInURL": {ID: "we_1", URL: "https://a.example/\x00", Secret: sealed("k")},
				"BadKeyID": {ID: "we_1", URL: "https://a.example", Secret: tokenkeeper.Sealed{KeyID: "\xff", Ciphertext: []byte{1}}},
			} {
				if err := s.CreateWebhookEndpoint(t.Context(), e); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
					t.Errorf("%s: CreateWebhookEndpoint = %v, want CodeInvalid", name, err)
				}
			}
		})},
		{"NotFound", withOutbox(func(t *testing.T, s outbox) {
			_, err := s.GetWebhookEndpoint(t.Context(), "we_nope")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			_, err = s.GetWebhookEndpoint(t.Context(), "we_\x00")
			wantCode(t, err, tokenkeeper.CodeNotFound)
			wantCode(t, s.DisableWebhookEndpoint(t.Context(), "we_nope", now()), tokenkeeper.CodeNotFound)
		})},
		{"Reseal", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			next := sealed("key-2")
			if err := s.ResealWebhookEndpoint(t.Context(), a.ID, a.Secret, next); err != nil {
				t.Fatal(err)
			}
			got, _ := s.GetWebhookEndpoint(t.Context(), a.ID)
			wantEqual(t, "resealed secret", got.Secret, next)
			// The old value no longer matches: compare and swap.
			wantCode(t, s.ResealWebhookEndpoint(t.Context(), a.ID, a.Secret, sealed("key-3")), tokenkeeper.CodeConflict)
			wantCode(t, s.ResealWebhookEndpoint(t.Context(), "we_nope", a.Secret, next), tokenkeeper.CodeNotFound)
			wantCode(t, s.ResealWebhookEndpoint(t.Context(), a.ID, next, tokenkeeper.Sealed{}), tokenkeeper.CodeInvalid)
		})},
		{"Disable", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			b := endpoint(t, s, "https://b.example/hook")
			events := enqueue(t, s, 2)
			// One of a's deliveries is done already: it stays delivered.
			for _, d := range claim(t, s, "o", now(), time.Hour, 10) {
				if d.EndpointID == a.ID && d.EventID == events[0].ID {
					finish(t, s, d, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered, Status: 200})
				}
			}
			first := now().Add(-time.Minute)
			if err := s.DisableWebhookEndpoint(t.Context(), a.ID, first); err != nil {
				t.Fatal(err)
			}
			if err := s.DisableWebhookEndpoint(t.Context(), a.ID, now()); err != nil {
				t.Fatalf("disabling again: %v", err)
			}
			got, _ := s.GetWebhookEndpoint(t.Context(), a.ID)
			if !got.DisabledAt.Equal(first) {
				t.Errorf("DisabledAt = %v, want the first time %v", got.DisabledAt, first)
			}
			states := map[tokenkeeper.DeliveryState]int{}
			for _, d := range listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: a.ID}) {
				states[d.State]++
				if d.State == tokenkeeper.DeliveryFailed && d.LastError == "" {
					t.Errorf("a delivery failed by disabling has no LastError")
				}
			}
			wantEqual(t, "a's deliveries by state", states, map[tokenkeeper.DeliveryState]int{tokenkeeper.DeliveryDelivered: 1, tokenkeeper.DeliveryFailed: 1})
			if n := len(listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: b.ID, State: tokenkeeper.DeliveryPending})); n != 2 {
				t.Errorf("b's pending deliveries = %d, want 2 (untouched)", n)
			}
			wantCode(t, s.DisableWebhookEndpoint(t.Context(), b.ID, time.Time{}), tokenkeeper.CodeInvalid)
		})},
	}
}

func claimDeliveriesTests() []test {
	return []test{
		{"DueOnlyInOrder", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			events := enqueue(t, s, 3)
			future := event("c1", tokenkeeper.EventDegraded, "future")
			future.Time = now().Add(time.Hour)
			appendEvent(t, s, future, tokenkeeper.Fanout{AllEndpoints: true})
			ds := claim(t, s, "o1", now(), time.Hour, 10)
			if len(ds) != 3 {
				t.Fatalf("claimed %d, want the 3 due", len(ds))
			}
			for i, d := range ds {
				if d.EventID != events[i].ID {
					t.Errorf("claim %d is of %s, want %s (oldest due first)", i, d.EventID, events[i].ID)
				}
				wantEqual(t, "claimed delivery's event", &d.Event, events[i])
			}
			// Claimed: not claimable again while the claim lasts.
			if ds := claim(t, s, "o2", now(), time.Hour, 10); len(ds) != 0 {
				t.Errorf("a second claimer got %d claimed deliveries", len(ds))
			}
			// The future one is due later.
			if ds := claim(t, s, "o2", now().Add(2*time.Hour), time.Hour, 10); len(ds) != 1 || ds[0].EventID != future.ID {
				t.Errorf("claim at +2h = %+v, want the future delivery", ds)
			}
		})},
		{"Limit", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			enqueue(t, s, 5)
			if ds := claim(t, s, "o", now(), time.Hour, 2); len(ds) != 2 {
				t.Errorf("claimed %d, want the limit 2", len(ds))
			}
			if ds := claim(t, s, "o", now(), time.Hour, 10); len(ds) != 3 {
				t.Errorf("claimed %d, want the other 3", len(ds))
			}
		})},
		{"Invalid", withOutbox(func(t *testing.T, s outbox) {
			for _, c := range []struct {
				owner string
				ttl   time.Duration
				limit int
			}{{"", time.Hour, 1}, {"o", 0, 1}, {"o", time.Hour, 0}, {"o\x00", time.Hour, 1}} {
				_, err := s.ClaimDeliveries(t.Context(), c.owner, now(), c.ttl, c.limit)
				wantCode(t, err, tokenkeeper.CodeInvalid)
			}
		})},
		{"ExpiredClaimTakenOver", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			enqueue(t, s, 1)
			first := claim(t, s, "dead", now(), short, 10)
			if len(first) != 1 {
				t.Fatalf("claimed %d, want 1", len(first))
			}
			time.Sleep(short + 50*time.Millisecond)
			second := claim(t, s, "alive", now(), time.Hour, 10)
			if len(second) != 1 || second[0].Claim.Fence <= first[0].Claim.Fence {
				t.Fatalf("after the claim expired: %+v, want the delivery with a higher fence", second)
			}
			// The dead claimer's late outcome is refused; the new one's counts.
			err := s.FinishAttempt(t.Context(), first[0].ID, first[0].Claim, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered})
			wantCode(t, err, tokenkeeper.CodeConflict)
			finish(t, s, second[0], tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered, Status: 200})
		})},
		{"Concurrent", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			endpoint(t, s, "https://b.example/hook")
			enqueue(t, s, 60) // 120 deliveries
			const claimers = 6
			var mu sync.Mutex
			seen := map[tokenkeeper.DeliveryID]string{}
			var wg sync.WaitGroup
			errs := make([]error, claimers)
			for w := range claimers {
				owner := fmt.Sprint("replica-", w)
				wg.Go(func() {
					for range 40 {
						ds, err := s.ClaimDeliveries(t.Context(), owner, now(), time.Hour, 3)
						if err != nil {
							errs[w] = err
							return
						}
						mu.Lock()
						for _, d := range ds {
							if prev, ok := seen[d.ID]; ok {
								errs[w] = fmt.Errorf("delivery %d claimed by %s and %s while leased", d.ID, prev, owner)
							}
							seen[d.ID] = owner
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if len(seen) != 120 {
				t.Errorf("claimed %d distinct deliveries, want all 120", len(seen))
			}
		})},
	}
}

func finishAttemptTests() []test {
	return []test{
		{"RetryThenDeliver", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			enqueue(t, s, 1)
			d := claim(t, s, "o", now(), time.Hour, 1)[0]
			at := now()
			next := at.Add(time.Minute)
			finish(t, s, d, tokenkeeper.DeliveryResult{At: at, State: tokenkeeper.DeliveryPending, NextAttemptAt: next, Status: 503, Error: "503 Service Unavailable"})
			got := listDeliveries(t, s, tokenkeeper.DeliveryFilter{})[0]
			if got.State != tokenkeeper.DeliveryPending || got.Attempts != 1 || got.LastStatus != 503 ||
				got.LastError != "503 Service Unavailable" || !got.LastAttemptAt.Equal(at) || !got.NextAttemptAt.Equal(next) || got.Claim.Owner != "" {
				t.Fatalf("after a failed attempt: %+v", got)
			}
			// The same claim cannot record twice.
			wantCode(t, s.FinishAttempt(t.Context(), d.ID, d.Claim, tokenkeeper.DeliveryResult{At: at, State: tokenkeeper.DeliveryDelivered}), tokenkeeper.CodeConflict)
			if ds := claim(t, s, "o", at, time.Hour, 1); len(ds) != 0 {
				t.Fatalf("claimable before its next attempt: %+v", ds)
			}
			d = claim(t, s, "o", next, time.Hour, 1)[0]
			finish(t, s, d, tokenkeeper.DeliveryResult{At: next, State: tokenkeeper.DeliveryDelivered, Status: 204})
			got = listDeliveries(t, s, tokenkeeper.DeliveryFilter{})[0]
			if got.State != tokenkeeper.DeliveryDelivered || got.Attempts != 2 || !got.DeliveredAt.Equal(next) || got.LastStatus != 204 || got.LastError != "" {
				t.Fatalf("after delivery: %+v", got)
			}
			if ds := claim(t, s, "o", next.Add(time.Hour), time.Hour, 1); len(ds) != 0 {
				t.Fatalf("a delivered delivery was claimed again: %+v", ds)
			}
		})},
		{"Failed", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			enqueue(t, s, 1)
			d := claim(t, s, "o", now(), time.Hour, 1)[0]
			finish(t, s, d, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryFailed, Error: "gave up after 3 attempts"})
			got := listDeliveries(t, s, tokenkeeper.DeliveryFilter{State: tokenkeeper.DeliveryFailed})
			if len(got) != 1 || !got[0].DeliveredAt.IsZero() {
				t.Fatalf("failed deliveries = %+v", got)
			}
			if ds := claim(t, s, "o", now().Add(time.Hour), time.Hour, 1); len(ds) != 0 {
				t.Fatalf("a failed delivery was claimed again")
			}
		})},
		{"Errors", withOutbox(func(t *testing.T, s outbox) {
			endpoint(t, s, "https://a.example/hook")
			enqueue(t, s, 1)
			d := claim(t, s, "o", now(), time.Hour, 1)[0]
			wantCode(t, s.FinishAttempt(t.Context(), d.ID+1000, d.Claim, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered}), tokenkeeper.CodeNotFound)
			wantCode(t, s.FinishAttempt(t.Context(), d.ID, d.Claim, tokenkeeper.DeliveryResult{At: now(), State: "lost"}), tokenkeeper.CodeInvalid)
			other := d.Claim
			other.Owner = "someone-else"
			wantCode(t, s.FinishAttempt(t.Context(), d.ID, other, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered}), tokenkeeper.CodeConflict)
			other = d.Claim
			other.Fence++
			wantCode(t, s.FinishAttempt(t.Context(), d.ID, other, tokenkeeper.DeliveryResult{At: now(), State: tokenkeeper.DeliveryDelivered}), tokenkeeper.CodeConflict)
		})},
	}
}

func listDeliveriesTests() []test {
	return []test{
		{"Filters", withOutbox(func(t *testing.T, s outbox) {
			a := endpoint(t, s, "https://a.example/hook")
			b := endpoint(t, s, "https://b.example/hook")
			events := enqueue(t, s, 3)
			all := listDeliveries(t, s, tokenkeeper.DeliveryFilter{})
			if len(all) != 6 {
				t.Fatalf("ListDeliveries = %d, want 6", len(all))
			}
			for i := 1; i < len(all); i++ {
				if all[i].ID >= all[i-1].ID {
					t.Fatalf("not newest first: %d then %d", all[i-1].ID, all[i].ID)
				}
			}
			for _, d := range all {
				if d.Event.ID != d.EventID || d.Event.Seq == 0 {
					t.Errorf("delivery %d: Event not filled in: %+v", d.ID, d.Event)
				}
			}
			if ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: b.ID}); len(ds) != 3 || ds[0].EndpointID != b.ID {
				t.Errorf("by endpoint: %+v", ds)
			}
			if ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EventID: events[1].ID}); len(ds) != 2 {
				t.Errorf("by event: %d, want 2", len(ds))
			}
			if ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{Before: all[1].ID, Limit: 2}); len(ds) != 2 || ds[0].ID != all[2].ID {
				t.Errorf("page before %d: %+v", all[1].ID, ds)
			}
			if ds := listDeliveries(t, s, tokenkeeper.DeliveryFilter{EndpointID: "we_\x00"}); len(ds) != 0 {
				t.Errorf("NUL endpoint id matched %d", len(ds))
			}
			_ = a
		})},
	}
}
