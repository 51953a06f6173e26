package emulator

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// drawLatencies draws n decisions for the token endpoint from an injector seeded with
// seed and set to f, and returns their latencies.
func drawLatencies(t *testing.T, seed uint64, f Faults, n int) []time.Duration {
	t.Helper()
	fi := newFaultInjector(seed)
	if err := f.validate(); err != nil {
		t.Fatalf("faults %v: %v", f, err)
	}
	fi.set(f)
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = fi.pick(EndpointToken).latency
	}
	return out
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// within reports whether got is within frac of want.
func within(got, want time.Duration, frac float64) bool {
	return math.Abs(float64(got-want)) <= frac*float64(want)
}

// The latency distributions are checked on the draws themselves, without a clock: tests
// never measure elapsed time. The sample sizes make the tolerances many standard errors
// wide, and the seed makes the draws the same on every run.
func TestFaultInjector_Latency(t *testing.T) {
	const n = 10000
	t.Run("Uniform", func(t *testing.T) {
		lo, hi := 10*time.Millisecond, 50*time.Millisecond
		lat := drawLatencies(t, 1, Faults{EndpointToken: {Latency: &Latency{Min: Duration(lo), Max: Duration(hi)}}}, n)
		var sum time.Duration
		for _, d := range lat {
			if d < lo || d > hi {
				t.Fatalf("latency %v outside [%v, %v]", d, lo, hi)
			}
			sum += d
		}
		if mean, mid := sum/n, (lo+hi)/2; !within(mean, mid, 0.05) {
			t.Errorf("mean latency %v, want %v ± 5%%", mean, mid)
		}
	})
	t.Run("UniformFixed", func(t *testing.T) {
		d := 30 * time.Millisecond
		for _, got := range drawLatencies(t, 1, Faults{EndpointToken: {Latency: &Latency{Min: Duration(d), Max: Duration(d)}}}, 100) {
			if got != d {
				t.Fatalf("latency %v, want exactly %v when min = max", got, d)
			}
		}
	})
	t.Run("LogNormal", func(t *testing.T) {
		p50, p99 := 20*time.Millisecond, 200*time.Millisecond
		lat := drawLatencies(t, 1, Faults{EndpointToken: {Latency: &Latency{P50: Duration(p50), P99: Duration(p99)}}}, n)
		slices.Sort(lat)
		if lat[0] <= 0 {
			t.Errorf("smallest latency %v, want positive", lat[0])
		}
		if got := quantile(lat, 0.5); !within(got, p50, 0.10) {
			t.Errorf("median %v, want %v ± 10%%", got, p50)
		}
		if got := quantile(lat, 0.99); !within(got, p99, 0.25) {
			t.Errorf("99th percentile %v, want %v ± 25%%", got, p99)
		}
	})
	t.Run("None", func(t *testing.T) {
		for _, got := range drawLatencies(t, 1, Faults{EndpointToken: {Error503: 0.5}}, 100) {
			if got != 0 {
				t.Fatalf("latency %v without a latency setting, want 0", got)
			}
		}
	})
}

// TestFaultInjector_Deterministic checks that two injectors with the same seed draw the
// same faults and latencies, and that another seed draws others.
func TestFaultInjector_Deterministic(t *testing.T) {
	f := Faults{EndpointToken: {
		Error503: 0.3, DropAfterCommit: 0.2,
		Latency: &Latency{P50: Duration(20 * time.Millisecond), P99: Duration(200 * time.Millisecond)},
	}}
	draw := func(seed uint64) []decision {
		fi := newFaultInjector(seed)
		fi.set(f)
		out := make([]decision, 1000)
		for i := range out {
			out[i] = fi.pick(EndpointToken)
		}
		return out
	}
	a, b := draw(42), draw(42)
	if diff := cmp.Diff(a, b, cmp.AllowUnexported(decision{})); diff != "" {
		t.Errorf("the same seed drew different decisions (-first +second):\n%s", diff)
	}
	if cmp.Equal(a, draw(43), cmp.AllowUnexported(decision{})) {
		t.Error("seeds 42 and 43 drew the same 1000 decisions")
	}
	kinds := map[string]int{}
	for _, d := range a {
		kinds[d.kind]++
	}
	if kinds[""] == 0 || kinds[Fault503] == 0 || kinds[FaultDropAfterCommit] == 0 {
		t.Errorf("kinds drawn %v, want a mix of none, %s and %s", kinds, Fault503, FaultDropAfterCommit)
	}
}

// TestFaultInjector_PickSkipsInapplicable checks that a kind named inapplicable (as a code
// exchange names omit_refresh_token) is never drawn: a script keeps it for a later request
// and draws no rate meanwhile, and a rate that lands on it draws no fault. Black-box tests
// cannot see the rate case, because a code exchange ignores the kind anyway.
func TestFaultInjector_PickSkipsInapplicable(t *testing.T) {
	kinds := func(fi *faultInjector, inapplicable ...[]string) []string {
		var out []string
		for _, ia := range inapplicable {
			out = append(out, fi.pick(EndpointToken, ia...).kind)
		}
		return out
	}
	omit := []string{FaultOmitRefreshToken}
	t.Run("Script", func(t *testing.T) {
		fi := newFaultInjector(1)
		// A rate of 1 behind the script: a skipped script entry must not draw it.
		fi.set(Faults{EndpointToken: {Error500: 1, Script: []string{FaultOmitRefreshToken, Fault503}}})
		got := kinds(fi, omit, omit, nil, omit, nil)
		want := []string{"", "", FaultOmitRefreshToken, Fault503, Fault500}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("kinds drawn (-want +got):\n%s", diff)
		}
	})
	t.Run("Rate", func(t *testing.T) {
		fi := newFaultInjector(1)
		fi.set(Faults{EndpointToken: {OmitRefreshToken: 1}})
		got := kinds(fi, omit, nil, omit)
		want := []string{"", FaultOmitRefreshToken, ""}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("kinds drawn (-want +got):\n%s", diff)
		}
	})
}
