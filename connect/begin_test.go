package connect_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

func TestFlow_Begin(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		authURL := e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back", Subject: companyFjord})
		u, err := url.Parse(authURL)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Scheme + "://" + u.Host + u.Path; got != e.cfg.Provider.AuthURL {
			t.Errorf("authorize URL %q, want %s", got, e.cfg.Provider.AuthURL)
		}
		q := u.Query()
		state, challenge := q.Get("state"), q.Get("code_challenge")
		want := url.Values{
			"response_type":                 {"code"},
			"client_id":                     {"demo-client"},
			"redirect_uri":                  {e.cfg.RedirectURL},
			"scope":                         {"users:read export-jobs:read"},
			"state":                         {state},
			"code_challenge":                {challenge},
			"code_challenge_method":         {"S256"},
			"urn_pleo_params_oauth_subject": {companyFjord},
		}
		if diff := cmp.Diff(want, q); diff != "" {
			t.Errorf("authorize query (-want +got):\n%s", diff)
		}
		if b, err := base64.RawURLEncoding.DecodeString(state); err != nil || len(b) != 32 {
			t.Errorf("state %q is not 32 bytes of unpadded base64url", state)
		}

		// The session is there: read it back, and find neither the state
		// nor the verifier in it, nor anywhere in the database's files.
		hash := sha256.Sum256([]byte(state))
		s, err := e.store.TakeSession(context.Background(), hash[:])
		if err != nil {
			t.Fatalf("TakeSession: %v", err)
		}
		verifier, err := e.sealer.Open(s.Verifier, tokenkeeper.AssociatedData(
			tokenkeeper.SealKindSession, hex.EncodeToString(hash[:]), tokenkeeper.FieldCodeVerifier))
		if err != nil {
			t.Fatalf("open the sealed verifier: %v", err)
		}
		sum := sha256.Sum256(verifier)
		if base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			t.Error("the sealed verifier does not match the URL's S256 challenge")
		}
		wantSession := &tokenkeeper.Session{
			StateHash: hash[:], ConnectionID: "acme", ReturnURL: "/back", Verifier: s.Verifier,
			CreatedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(connect.DefaultSessionTTL),
		}
		if diff := cmp.Diff(wantSession, s); diff != "" {
			t.Errorf("session (-want +got):\n%s", diff)
		}
		for _, secret := range []string{state, string(verifier)} {
			if bytes.Contains(s.Verifier.Ciphertext, []byte(secret)) || bytes.Contains(s.StateHash, []byte(secret)) {
				t.Errorf("the session holds %.8s... in plaintext", secret)
			}
		}
		files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{state, string(verifier)} {
				if bytes.Contains(data, []byte(secret)) {
					t.Errorf("%s holds %.8s... in plaintext", filepath.Base(f), secret)
				}
			}
		}
	})

	// A binding is stored nowhere: it is in the associated data of the
	// sealed verifier, which opens with it and without it does not.
	t.Run("Binding", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		const binding = "Xb8kQ2nV7rLm4pT9sW1yZc6dF3gH5jK0"
		authURL := e.begin(t, connect.BeginRequest{ConnectionID: "acme", Binding: binding})
		u, err := url.Parse(authURL)
		if err != nil {
			t.Fatal(err)
		}
		if u.Query().Has("binding") || strings.Contains(authURL, binding) {
			t.Errorf("the authorize URL carries the binding: %s", authURL)
		}
		hash := sha256.Sum256([]byte(u.Query().Get("state")))
		stateHex := hex.EncodeToString(hash[:])
		bsum := sha256.Sum256([]byte(binding))
		s, err := e.store.TakeSession(context.Background(), hash[:])
		if err != nil {
			t.Fatalf("TakeSession: %v", err)
		}
		bound := tokenkeeper.FieldCodeVerifier + "/" + hex.EncodeToString(bsum[:])
		if _, err := e.sealer.Open(s.Verifier, tokenkeeper.AssociatedData(tokenkeeper.SealKindSession, stateHex, bound)); err != nil {
			t.Errorf("the verifier does not open with the binding's field %q: %v", bound, err)
		}
		if _, err := e.sealer.Open(s.Verifier, tokenkeeper.AssociatedData(tokenkeeper.SealKindSession, stateHex, tokenkeeper.FieldCodeVerifier)); err == nil {
			t.Error("the verifier of a bound session opens without the binding")
		}
		files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range [][]byte{[]byte(binding), bsum[:], []byte(hex.EncodeToString(bsum[:]))} {
				if bytes.Contains(data, secret) {
					t.Errorf("%s holds the binding or its hash", filepath.Base(f))
				}
			}
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		for name, req := range map[string]connect.BeginRequest{
			"no connection id":     {ReturnURL: "/back"},
			"bad connection id":    {ConnectionID: "acme/../x"},
			"long connection id":   {ConnectionID: tokenkeeper.ConnectionID(strings.Repeat("a", 129))},
			"bad return URL":       {ConnectionID: "acme", ReturnURL: "//evil.example"},
			"subject with newline": {ConnectionID: "acme", Subject: "urn:pleo:company:x\nINFO forged"},
			"long subject":         {ConnectionID: "acme", Subject: strings.Repeat("x", 257)},
		} {
			_, err := e.flow.Begin(context.Background(), req)
			if code := tokenkeeper.ErrorCode(err); code != tokenkeeper.CodeInvalid {
				t.Errorf("%s: Begin error %v (code %q), want CodeInvalid", name, err, code)
			}
		}
	})

	t.Run("ErrStore", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		e.store.Close()
		if _, err := e.flow.Begin(context.Background(), connect.BeginRequest{ConnectionID: "acme"}); err == nil {
			t.Error("Begin succeeded on a closed store")
		}
	})
}

// countingStore counts DeleteExpiredSessions calls on a real Store.
type countingStore struct {
	tokenkeeper.Store
	deletes atomic.Int32
}

func (s *countingStore) DeleteExpiredSessions(ctx context.Context, now time.Time) (int, error) {
	s.deletes.Add(1)
	return s.Store.DeleteExpiredSessions(ctx, now)
}

func TestFlow_Begin_Prune(t *testing.T) {
	cs := &countingStore{}
	e := newEnv(t, autoApprove, func(e *env) {
		cs.Store = e.store
		e.cfg.Store = cs
	})
	stale := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "stale"}))
	recent := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "recent"}))
	if n := cs.deletes.Load(); n != 1 {
		t.Errorf("two Begins in a minute pruned %d times, want 1", n)
	}

	// An hour after expiring, a session is still "expired" rather than
	// "unknown"; after that, the next prune deletes it.
	e.clock.Advance(connect.DefaultSessionTTL + 30*time.Minute)
	_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: recent})
	wantFlowError(t, err, connect.ReasonStateExpired, tokenkeeper.CodeInvalid)
	e.clock.Advance(31 * time.Minute)
	e.begin(t, connect.BeginRequest{ConnectionID: "later"})
	if n := cs.deletes.Load(); n != 2 {
		t.Errorf("a Begin an hour later did not prune: %d prunes, want 2", n)
	}
	_, err = e.flow.Callback(context.Background(), connect.CallbackRequest{Query: stale})
	wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
}
