package emulator

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Fault endpoints: the keys of [Faults].
const (
	EndpointAuthorize  = "authorize"  // GET /oauth/authorize
	EndpointToken      = "token"      // POST /oauth/token, every grant
	EndpointIntrospect = "introspect" // POST /oauth/token/introspect
	EndpointAPI        = "api"        // every API path
)

// Fault kinds, usable in [EndpointFaults.Script].
const (
	FaultNone = "none" // in a script: let one request through untouched
	// Before processing: nothing changes on the server.
	Fault500        = "error_500"
	Fault503        = "error_503" // with Retry-After
	Fault429        = "error_429" // with Retry-After
	FaultDropBefore = "drop_before"
	// After commit: the request took effect (tokens rotated, a code was spent), but the
	// client never learns it. This is the lost-response case.
	FaultDropAfterCommit   = "drop_after_commit"
	FaultGarbleAfterCommit = "garble_after_commit"    // 200 with a truncated JSON body
	Fault500AfterCommit    = "error_500_after_commit" // a 5xx that hides a success
	// Variants of a success.
	//
	// FaultOmitRefreshToken answers a refresh with a new access token and no
	// refresh_token; the presented refresh token stays valid (RFC 6749 §6). Token endpoint,
	// refresh grant only.
	FaultOmitRefreshToken = "omit_refresh_token"
	// FaultWrongState redirects from the authorise endpoint with a code and a state the
	// client did not send. Authorize only.
	FaultWrongState = "wrong_state"
	// FaultMissingCode redirects from the authorise endpoint with the state but neither a
	// code nor an error. Authorize only.
	FaultMissingCode = "missing_code"

	defaultRetryAfterSeconds = 1
	// maxLatency bounds an injected latency, so a fault cannot hold a request for days.
	maxLatency = 10 * time.Minute
)

type faultPhase uint8

const (
	phaseBefore faultPhase = iota + 1
	phaseAfter
	phaseVariant
)

// faultKinds lists every kind, in the order of EndpointFaults.rates. endpoints lists where
// a kind applies; nil means everywhere.
var faultKinds = []struct {
	name      string
	phase     faultPhase
	endpoints []string
}{
	{Fault500, phaseBefore, nil},
	{Fault503, phaseBefore, nil},
	{Fault429, phaseBefore, nil},
	{FaultDropBefore, phaseBefore, nil},
	{FaultDropAfterCommit, phaseAfter, []string{EndpointToken, EndpointIntrospect, EndpointAPI}},
	{FaultGarbleAfterCommit, phaseAfter, []string{EndpointToken, EndpointIntrospect, EndpointAPI}},
	{Fault500AfterCommit, phaseAfter, []string{EndpointToken, EndpointIntrospect, EndpointAPI}},
	{FaultOmitRefreshToken, phaseVariant, []string{EndpointToken}},
	{FaultWrongState, phaseVariant, []string{EndpointAuthorize}},
	{FaultMissingCode, phaseVariant, []string{EndpointAuthorize}},
}

// Duration is a time.Duration that reads and writes JSON in Go syntax ("1.5s", "16m").
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string such as "250ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"250ms\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// Latency is a latency distribution: either uniform between Min and Max, or log-normal
// with the given median (P50) and 99th percentile (P99). The zero value adds no latency.
type Latency struct {
	Min Duration `json:"min,omitempty"`
	Max Duration `json:"max,omitempty"`
	P50 Duration `json:"p50,omitempty"`
	P99 Duration `json:"p99,omitempty"`
}

// EndpointFaults are the faults injected on one endpoint. Each rate is a probability in
// [0, 1]; together they may not exceed 1. The zero value injects nothing.
type EndpointFaults struct {
	Latency             *Latency `json:"latency,omitempty"`
	Error500            float64  `json:"error_500,omitempty"`
	Error503            float64  `json:"error_503,omitempty"`
	Error429            float64  `json:"error_429,omitempty"`
	DropBefore          float64  `json:"drop_before,omitempty"`
	DropAfterCommit     float64  `json:"drop_after_commit,omitempty"`
	GarbleAfterCommit   float64  `json:"garble_after_commit,omitempty"`
	Error500AfterCommit float64  `json:"error_500_after_commit,omitempty"`
	OmitRefreshToken    float64  `json:"omit_refresh_token,omitempty"`
	WrongState          float64  `json:"wrong_state,omitempty"`
	MissingCode         float64  `json:"missing_code,omitempty"`
	// RetryAfter is sent with 503 and 429, rounded up to whole seconds. Zero means 1s.
	RetryAfter Duration `json:"retry_after,omitempty"`
	// Script lists the faults of the next requests, one per request, before the rates
	// apply: deterministic one-shot faults for tests. FaultNone passes a request through.
	Script []string `json:"script,omitempty"`
}

// Faults maps an endpoint (EndpointToken, EndpointAPI, ...) to its faults.
type Faults map[string]EndpointFaults

func (f Faults) validate() error {
	for ep, ef := range f {
		switch ep {
		case EndpointAuthorize, EndpointToken, EndpointIntrospect, EndpointAPI:
		default:
			return fmt.Errorf("unknown endpoint %q (known: authorize, token, introspect, api)", ep)
		}
		if err := ef.validate(ep); err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
	}
	return nil
}

func (ef EndpointFaults) rates() []float64 {
	return []float64{ef.Error500, ef.Error503, ef.Error429, ef.DropBefore,
		ef.DropAfterCommit, ef.GarbleAfterCommit, ef.Error500AfterCommit,
		ef.OmitRefreshToken, ef.WrongState, ef.MissingCode}
}

func (ef EndpointFaults) validate(endpoint string) error {
	sum := 0.0
	for i, r := range ef.rates() {
		k := faultKinds[i]
		if r < 0 || r > 1 || math.IsNaN(r) {
			return fmt.Errorf("rate %s = %v is not in [0, 1]", k.name, r)
		}
		if r > 0 && !kindApplies(i, endpoint) {
			return fmt.Errorf("%s does not apply to this endpoint", k.name)
		}
		sum += r
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("the rates add up to %v, more than 1", sum)
	}
	if ef.RetryAfter < 0 {
		return fmt.Errorf("retry_after is negative")
	}
	if l := ef.Latency; l != nil {
		uniform := l.Min != 0 || l.Max != 0
		lognormal := l.P50 != 0 || l.P99 != 0
		switch {
		case uniform && lognormal:
			return fmt.Errorf("latency takes min/max or p50/p99, not both")
		case uniform && (l.Min < 0 || l.Max < l.Min):
			return fmt.Errorf("latency needs 0 <= min <= max")
		case lognormal && (l.P50 <= 0 || l.P99 < l.P50):
			return fmt.Errorf("latency needs 0 < p50 <= p99")
		case l.Max > Duration(maxLatency) || l.P99 > Duration(maxLatency):
			return fmt.Errorf("latency above %s is not supported", maxLatency)
		}
	}
	for _, k := range ef.Script {
		if k == FaultNone {
			continue
		}
		i := kindIndex(k)
		if i < 0 {
			return fmt.Errorf("unknown fault %q in script", k)
		}
		if !kindApplies(i, endpoint) {
			return fmt.Errorf("%s does not apply to this endpoint", k)
		}
	}
	return nil
}

func kindApplies(i int, endpoint string) bool {
	eps := faultKinds[i].endpoints
	return eps == nil || contains(eps, endpoint)
}

func kindIndex(k string) int {
	for i, known := range faultKinds {
		if known.name == k {
			return i
		}
	}
	return -1
}

// decision is what the injector chose for one request.
type decision struct {
	kind       string // "" for none
	latency    time.Duration
	retryAfter time.Duration
}

func (d decision) phase() faultPhase {
	if i := kindIndex(d.kind); i >= 0 {
		return faultKinds[i].phase
	}
	return 0
}

func (d decision) afterCommit() bool      { return d.phase() == phaseAfter }
func (d decision) beforeProcessing() bool { return d.phase() == phaseBefore }

type faultInjector struct {
	mu     sync.Mutex
	rng    *rand.Rand
	faults Faults
}

func newFaultInjector(seed uint64) *faultInjector {
	return &faultInjector{rng: rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb)), faults: Faults{}}
}

// reset clears every fault and restarts the random sequence from seed, so that after a
// reset the same faults are drawn as after start.
func (fi *faultInjector) reset(seed uint64) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.rng = rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	fi.faults = Faults{}
}

func (fi *faultInjector) set(f Faults) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.faults = Faults{}
	for k, v := range f {
		v.Script = append([]string(nil), v.Script...)
		fi.faults[k] = v
	}
}

func (fi *faultInjector) get() Faults {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	out := Faults{}
	for k, v := range fi.faults {
		v.Script = append([]string(nil), v.Script...)
		out[k] = v
	}
	return out
}

// pick draws the fault for one request on endpoint. Draws happen in request order, so a
// sequential client sees the same faults for the same seed.
//
// A kind that does not apply to this request (omit_refresh_token on a code exchange) is
// never drawn: a script keeps it for the next request it applies to, and a rate draws no
// fault instead.
func (fi *faultInjector) pick(endpoint string, inapplicable ...string) decision {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	ef, ok := fi.faults[endpoint]
	if !ok {
		return decision{}
	}
	var d decision
	if len(ef.Script) > 0 && !slices.Contains(inapplicable, ef.Script[0]) {
		d.kind = ef.Script[0]
		ef.Script = ef.Script[1:]
		fi.faults[endpoint] = ef
		if d.kind == FaultNone {
			d.kind = ""
		}
	} else if len(ef.Script) == 0 {
		u, acc := fi.rng.Float64(), 0.0
		for i, r := range ef.rates() {
			acc += r
			if r > 0 && u < acc {
				if !slices.Contains(inapplicable, faultKinds[i].name) {
					d.kind = faultKinds[i].name
				}
				break
			}
		}
	}
	if l := ef.Latency; l != nil {
		switch {
		case l.Max > 0:
			d.latency = time.Duration(l.Min) + time.Duration(fi.rng.Float64()*float64(l.Max-l.Min))
		case l.P50 > 0:
			// log-normal: ln(X) ~ N(mu, sigma²) with mu = ln(p50), and p99 = e^(mu + 2.326σ).
			mu := math.Log(float64(l.P50))
			sigma := (math.Log(float64(l.P99)) - mu) / 2.326
			d.latency = time.Duration(math.Exp(mu + sigma*fi.rng.NormFloat64()))
		}
		d.latency = min(d.latency, maxLatency)
	}
	d.retryAfter = time.Duration(ef.RetryAfter)
	if d.retryAfter == 0 {
		d.retryAfter = defaultRetryAfterSeconds * time.Second
	}
	return d
}

// SetFaults replaces every injected fault. It fails, changing nothing, if f is invalid.
// Nil clears all faults.
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("emulator: faults: %w", err)
	}
	e.faults.set(f)
	return nil
}

// Faults returns the injected faults, with what is left of each script.
func (e *Emulator) Faults() Faults { return e.faults.get() }

// applyBefore acts on a before-processing fault: it sleeps the latency, then, if the
// decision is a fault, answers (or drops) the request and returns true. retryKey names
// what a Retry-After applies to, for retry_too_soon detection.
func (e *Emulator) applyBefore(w http.ResponseWriter, d decision, endpoint, retryKey, auth string, oauth bool) bool {
	if d.latency > 0 {
		// Not bound to the request's context: a server keeps working after the client
		// gave up, which is what makes a timed-out refresh an unknown outcome. Only
		// closing the emulator cuts the wait short, and then the request is dropped.
		t := time.NewTimer(d.latency)
		select {
		case <-t.C:
		case <-e.stop:
			t.Stop()
			panic(http.ErrAbortHandler)
		}
	}
	if !d.beforeProcessing() {
		return false
	}
	e.mu.Lock()
	e.ledger.count(endpoint, "fault:"+d.kind)
	if (d.kind == Fault503 || d.kind == Fault429) && retryKey != "" {
		now := e.clock.Now()
		e.ledger.promiseRetryAfter(retryKey, now.Add(d.retryAfter), now)
	}
	e.unlock()
	switch d.kind {
	case FaultDropBefore:
		panic(http.ErrAbortHandler) // closes the connection without a response
	case Fault503, Fault429:
		secs := int(math.Ceil(d.retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		status := http.StatusServiceUnavailable
		code := "temporarily_unavailable"
		if d.kind == Fault429 {
			status, code = http.StatusTooManyRequests, "too_many_requests"
		}
		writeFaultBody(w, status, code, oauth)
	default:
		writeFaultBody(w, http.StatusInternalServerError, "server_error", oauth)
	}
	return true
}

// applyAfter acts on an after-commit fault and returns true if it answered the request.
func (e *Emulator) applyAfter(w http.ResponseWriter, d decision, endpoint string, oauth bool) bool {
	if !d.afterCommit() {
		return false
	}
	e.mu.Lock()
	e.ledger.count(endpoint, "fault:"+d.kind)
	e.unlock()
	switch d.kind {
	case FaultDropAfterCommit:
		panic(http.ErrAbortHandler)
	case FaultGarbleAfterCommit:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access_token":"`))
	default:
		writeFaultBody(w, http.StatusInternalServerError, "server_error", oauth)
	}
	return true
}

func writeFaultBody(w http.ResponseWriter, status int, code string, oauth bool) {
	if oauth {
		writeJSON(w, status, map[string]string{"error": code, "error_description": "injected fault"})
		return
	}
	writeJSON(w, status, map[string]string{"type": code, "message": "injected fault"})
}
