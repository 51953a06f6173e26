package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// The fakes are function-field collaborators for the fuzz tests, which run
// thousands of requests a second. A nil field fails with not_found (Prune
// finds nothing).
type fakeKeeper struct {
	TokenFunc      func(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error)
	InvalidateFunc func(ctx context.Context, id tokenkeeper.ConnectionID, stale tokenkeeper.Secret) (tokenkeeper.AccessToken, error)
	RefreshFunc    func(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error)
	DisconnectFunc func(ctx context.Context, id tokenkeeper.ConnectionID, reason string) error
	UninstallFunc  func(ctx context.Context, id tokenkeeper.ConnectionID) error
	PruneFunc      func(ctx context.Context, retention time.Duration, dryRun bool) ([]*tokenkeeper.Connection, error)
}

var _ httpapi.Keeper = (*fakeKeeper)(nil)

func notFound(id tokenkeeper.ConnectionID) error {
	return tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "connection %s not found", id)
}

func (k *fakeKeeper) Token(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	if k.TokenFunc == nil {
		return tokenkeeper.AccessToken{}, notFound(id)
	}
	return k.TokenFunc(ctx, id)
}

func (k *fakeKeeper) Invalidate(ctx context.Context, id tokenkeeper.ConnectionID, stale tokenkeeper.Secret) (tokenkeeper.AccessToken, error) {
	if k.InvalidateFunc == nil {
		return tokenkeeper.AccessToken{}, notFound(id)
	}
	return k.InvalidateFunc(ctx, id, stale)
}

func (k *fakeKeeper) Refresh(ctx context.Context, id tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
	if k.RefreshFunc == nil {
		return tokenkeeper.AccessToken{}, notFound(id)
	}
	return k.RefreshFunc(ctx, id)
}

func (k *fakeKeeper) Disconnect(ctx context.Context, id tokenkeeper.ConnectionID, reason string) error {
	if k.DisconnectFunc == nil {
		return notFound(id)
	}
	return k.DisconnectFunc(ctx, id, reason)
}

func (k *fakeKeeper) Uninstall(ctx context.Context, id tokenkeeper.ConnectionID) error {
	if k.UninstallFunc == nil {
		return notFound(id)
	}
	return k.UninstallFunc(ctx, id)
}

func (k *fakeKeeper) Prune(ctx context.Context, retention time.Duration, dryRun bool) ([]*tokenkeeper.Connection, error) {
	if k.PruneFunc == nil {
		return nil, nil
	}
	return k.PruneFunc(ctx, retention, dryRun)
}

// fakeFlow fakes NewLink; its other methods are not called.
type fakeFlow struct {
	httpapi.Flow
	NewLinkFunc func(ctx context.Context, req connect.LinkRequest) (*connect.Link, error)
}

func (f *fakeFlow) NewLink(ctx context.Context, req connect.LinkRequest) (*connect.Link, error) {
	return f.NewLinkFunc(ctx, req)
}

// fakeStore fakes the reads; its other methods are not called.
type fakeStore struct {
	tokenkeeper.Store
	GetConnectionFunc func(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error)
}

func (s *fakeStore) GetConnection(ctx context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
	return s.GetConnectionFunc(ctx, id)
}

// fakeKeys holds one key.
type fakeKeys struct {
	tokenkeeper.APIKeyStore
	key *tokenkeeper.APIKey
}

func (k *fakeKeys) GetAPIKey(_ context.Context, id tokenkeeper.APIKeyID) (*tokenkeeper.APIKey, error) {
	if id != k.key.ID {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeNotFound, "no key %s", id)
	}
	c := *k.key
	return &c, nil
}

type fakeAudit struct{ tokenkeeper.AuditLog }

func (fakeAudit) AppendAudit(context.Context, *tokenkeeper.AuditEntry) error { return nil }

// fuzzServer is a Server on fakes, with an admin key. links records the
// LinkRequests NewLink was given; ids the ids GetConnection was asked for.
type fuzzServer struct {
	api    *httpapi.Server
	key    tokenkeeper.Secret
	keeper *fakeKeeper
	mu     sync.Mutex
	links  []connect.LinkRequest
	ids    []tokenkeeper.ConnectionID
}

func newFuzzServer(t testing.TB) *fuzzServer {
	key, rec, err := tokenkeeper.NewAPIKey("fuzz", []tokenkeeper.Scope{tokenkeeper.ScopeAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := &fuzzServer{key: key, keeper: &fakeKeeper{}}
	flow := &fakeFlow{NewLinkFunc: func(_ context.Context, req connect.LinkRequest) (*connect.Link, error) {
		s.mu.Lock()
		s.links = append(s.links, req)
		s.mu.Unlock()
		return &connect.Link{Token: tokenkeeper.NewSecret("link-token"), ConnectionID: req.ConnectionID,
			ReturnURL: req.ReturnURL, ExpiresAt: time.Now().Add(time.Hour)}, nil
	}}
	store := &fakeStore{GetConnectionFunc: func(_ context.Context, id tokenkeeper.ConnectionID) (*tokenkeeper.Record, error) {
		s.mu.Lock()
		s.ids = append(s.ids, id)
		s.mu.Unlock()
		return &tokenkeeper.Record{Connection: tokenkeeper.Connection{ID: id, State: tokenkeeper.StateActive, Generation: 1}}, nil
	}}
	s.api, err = httpapi.New(httpapi.Config{Keeper: s.keeper, Flow: flow, Proxy: fakeProxy(nil), Store: store,
		APIKeys: &fakeKeys{key: rec}, Audit: fakeAudit{}, PublicURL: mustURL(t, "https://tk.example"), Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzServer_ConnectSessionBody: whatever the body, the answer is 201 or a
// precise 4xx JSON error, never a 5xx; and a body accepted is one object
// of known fields whose connection_id is valid.
func FuzzServer_ConnectSessionBody(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.mu.Lock()
		s.links = nil
		s.mu.Unlock()
		r := httptest.NewRequest("POST", "/v1/connect-sessions", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+s.key.Reveal())
		w := httptest.NewRecorder()
		s.api.ServeHTTP(w, r)
		checkFuzzAnswer(t, w, http.StatusCreated, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		s.mu.Lock()
		links := s.links
		s.mu.Unlock()
		if w.Code != http.StatusCreated {
			if len(links) != 0 {
				t.Fatalf("status %d, yet NewLink was called", w.Code)
			}
			return
		}
		var strict httpapi.ConnectSessionRequest
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&strict); err != nil || dec.More() {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		if len(links) != 1 || links[0].ConnectionID.Validate() != nil || links[0].TTL < 0 ||
			links[0].TTL > time.Duration(httpapi.MaxConnectSessionSeconds)*time.Second {
			t.Fatalf("NewLink got %+v", links)
		}
	})
}

// FuzzServer_TokenBody: whatever the body of POST .../token, the answer is
// 200 or a precise 4xx JSON error, never a 5xx, and the keeper is asked
// what encoding/json's strict reading of the body says (strictTokenCalls):
// Token, Invalidate with exactly the reported string, or nothing at all.
func FuzzServer_TokenBody(f *testing.F) {
	s := newFuzzServer(f)
	var calls []string // "token", or "invalidate:" and the stale token
	answer := tokenkeeper.AccessToken{Value: tokenkeeper.NewSecret("fresh-token"), ExpiresAt: time.Now().Add(time.Hour)}
	s.keeper.TokenFunc = func(context.Context, tokenkeeper.ConnectionID) (tokenkeeper.AccessToken, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		calls = append(calls, "token")
		return answer, nil
	}
	s.keeper.InvalidateFunc = func(_ context.Context, _ tokenkeeper.ConnectionID, stale tokenkeeper.Secret) (tokenkeeper.AccessToken, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		calls = append(calls, "invalidate:"+stale.Reveal())
		return answer, nil
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s.mu.Lock()
		calls = nil
		s.mu.Unlock()
		r := httptest.NewRequest("POST", "/v1/connections/acme/token", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+s.key.Reveal())
		w := httptest.NewRecorder()
		s.api.ServeHTTP(w, r)
		checkFuzzAnswer(t, w, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		s.mu.Lock()
		got := slices.Clone(calls)
		s.mu.Unlock()
		wantCalls := strictTokenCalls(body)
		if w.Code == http.StatusRequestEntityTooLarge {
			wantCalls = nil
		}
		if (w.Code == http.StatusOK) != (wantCalls != nil) || !slices.Equal(got, wantCalls) {
			t.Fatalf("status %d, the keeper was asked %q; encoding/json's strict reading wants %q", w.Code, got, wantCalls)
		}
	})
}

// strictTokenCalls is what the keeper should be asked for a token route
// body, by encoding/json's strict reading: ["token"] with no body or no
// rejected_token, ["invalidate:<token>"] with a non-empty string, and nil
// for a body the route must refuse.
func strictTokenCalls(body []byte) []string {
	if len(body) == 0 {
		return []string{"token"}
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); !utf8.Valid(body) || len(trimmed) == 0 || trimmed[0] != '{' {
		return nil
	}
	var strict struct {
		RejectedToken json.RawMessage `json:"rejected_token"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&strict); err != nil {
		return nil
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil
	}
	if strict.RejectedToken == nil {
		return []string{"token"}
	}
	var tok string
	if json.Unmarshal(strict.RejectedToken, &tok) != nil || tok == "" {
		return nil // null, another type, or ""
	}
	return []string{"invalidate:" + tok}
}

// FuzzServer_ConnectionPath: whatever the path after /v1/connections/,
// the answer is never a redirect or a 5xx, and the store is only ever
// asked about valid ids.
func FuzzServer_ConnectionPath(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, method, rest string) {
		raw := method + " /v1/connections/" + rest + " HTTP/1.1\r\nHost: tk.example\r\nAuthorization: Bearer " +
			s.key.Reveal() + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server would refuse it before any handler
		}
		r.RemoteAddr = "192.0.2.1:1234"
		s.mu.Lock()
		s.ids = nil
		s.mu.Unlock()
		w := httptest.NewRecorder()
		s.api.ServeHTTP(w, r)
		checkFuzzAnswer(t, w, 200, 204, 400, 404, 405, 415)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range s.ids {
			if err := id.Validate(); err != nil {
				t.Fatalf("the store was asked about %q: %v", id, err)
			}
		}
	})
}

// checkFuzzAnswer fails unless w's status is one of ok and every non-2xx
// answer is a JSON error with a known code and the right status.
func checkFuzzAnswer(t *testing.T, w *httptest.ResponseRecorder, ok ...int) {
	t.Helper()
	if !slices.Contains(ok, w.Code) {
		t.Fatalf("status %d; body %s", w.Code, w.Body)
	}
	if w.Code < 300 {
		return
	}
	var b httpapi.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("status %d with a body that is not JSON: %q", w.Code, w.Body)
	}
	if !slices.Contains(httpapi.Codes(), b.Error.Code) || httpapi.Status(b.Error.Code) != w.Code || b.Error.Message == "" {
		t.Fatalf("status %d with error %+v", w.Code, b.Error)
	}
}
