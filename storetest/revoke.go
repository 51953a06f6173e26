package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func listAPIKeysTests() []test {
	return []test{
		{"Empty", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{})
		})},
		{"OldestFirst", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			// Oldest first; keys created at the same microsecond in id
			// (byte) order; revoked keys included.
			t0 := now().Add(-time.Hour)
			keys := map[string]*tokenkeeper.APIKey{}
			for name, created := range map[string]time.Time{
				"a": t0, "b": t0.Add(time.Microsecond), "c1": t0.Add(time.Second), "c2": t0.Add(time.Second),
				"d": t0.Add(time.Minute),
			} {
				keys[name] = apiKey(t, name, created)
			}
			keys["c1"].ID, keys["c2"].ID = "akB", "aka" // "B" < "a" in bytes
			keys["b"].RevokedAt = t0.Add(2 * time.Minute)
			for _, name := range []string{"d", "c2", "a", "c1", "b"} {
				createKey(t, ks, keys[name])
			}
			if err := ks.RevokeAPIKey(t.Context(), keys["d"].ID, t0.Add(3*time.Minute)); err != nil {
				t.Fatal(err)
			}
			keys["d"].RevokedAt = t0.Add(3 * time.Minute)
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{
				keys["a"], keys["b"], keys["c1"], keys["c2"], keys["d"],
			})
		})},
	}
}

func revokeAPIKeyTests() []test {
	return []test{
		{"OK", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k, other := apiKey(t, "ci", now()), apiKey(t, "other", now())
			createKey(t, ks, k)
			createKey(t, ks, other)
			at := time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.FixedZone("UTC+1", 3600))
			if err := ks.RevokeAPIKey(t.Context(), k.ID, at); err != nil {
				t.Fatal(err)
			}
			want := *k
			want.RevokedAt = at.UTC().Truncate(time.Microsecond)
			// A revoked key is still returned, by Get and by List.
			got := getKey(t, ks, k.ID)
			wantEqual(t, "GetAPIKey of the revoked key", got, &want)
			if got.Allows(tokenkeeper.ScopeTokens) {
				t.Error("the revoked key allows tokens")
			}
			wantEqual(t, "GetAPIKey of the other key", getKey(t, ks, other.ID), other)
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{&want, other})
		})},
		{"KeepsFirstTime", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k := apiKey(t, "ci", now())
			createKey(t, ks, k)
			first := now()
			// The first revocation's time stays, whether a later call
			// passes a later or an earlier time.
			for _, at := range []time.Time{first, first.Add(time.Hour), first.Add(-time.Hour)} {
				if err := ks.RevokeAPIKey(t.Context(), k.ID, at); err != nil {
					t.Fatalf("RevokeAPIKey(%v): %v", at, err)
				}
				if got := getKey(t, ks, k.ID).RevokedAt; !got.Equal(first) {
					t.Fatalf("RevokedAt = %v after revoking at %v, want the first %v", got, at, first)
				}
			}
		})},
		{"ErrNotFound", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k := apiKey(t, "ci", now())
			createKey(t, ks, k)
			wantCode(t, ks.RevokeAPIKey(t.Context(), apiKey(t, "other", now()).ID, now()), tokenkeeper.CodeNotFound)
			wantEqual(t, "ListAPIKeys", listKeys(t, ks), []*tokenkeeper.APIKey{k})
		})},
		{"ErrInvalidZeroTime", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			// A zero time would store "not revoked": a revocation that
			// reports success and leaves the key valid.
			k := apiKey(t, "ci", now())
			createKey(t, ks, k)
			wantCode(t, ks.RevokeAPIKey(t.Context(), k.ID, time.Time{}), tokenkeeper.CodeInvalid)
			wantEqual(t, "GetAPIKey", getKey(t, ks, k.ID), k)
		})},
		{"Race", withKeys(func(t *testing.T, ks tokenkeeper.APIKeyStore) {
			k := apiKey(t, "ci", now())
			createKey(t, ks, k)
			const n = 16
			base := now()
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					errs[i] = ks.RevokeAPIKey(t.Context(), k.ID, base.Add(time.Duration(i)*time.Millisecond))
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("revoker %d: %v", i, err)
				}
			}
			got := getKey(t, ks, k.ID).RevokedAt
			if d := got.Sub(base); got.IsZero() || d < 0 || d >= n*time.Millisecond || d%time.Millisecond != 0 {
				t.Errorf("RevokedAt = %v, want one of the revokers' times (%v plus whole ms below %d)", got, base, n)
			}
		})},
	}
}
