package connect_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/keeper"
)

// newLink makes a link and fails the test if it cannot.
func (e *env) newLink(t testing.TB, req connect.LinkRequest) *connect.Link {
	t.Helper()
	l, err := e.flow.NewLink(context.Background(), req)
	if err != nil {
		t.Fatalf("NewLink(%+v): %v", req, err)
	}
	return l
}

// openLink opens a link and fails the test if it cannot.
func (e *env) openLink(t testing.TB, token, binding string) string {
	t.Helper()
	authURL, err := e.flow.OpenLink(context.Background(), token, binding)
	if err != nil {
		t.Fatalf("OpenLink: %v", err)
	}
	return authURL
}

func TestFlow_Link(t *testing.T) {
	t.Run("Journey", func(t *testing.T) {
		// NewLink, OpenLink, the provider's consent, Callback: connected,
		// with a real keeper on the real clock.
		e := newEnv(t, autoApprove, func(e *env) { e.cfg.Now = nil })
		k, err := keeper.New(keeper.Config{Store: e.store, Sealer: e.sealer, Provider: e.cfg.Provider,
			ClientID: e.cfg.ClientID, ClientSecret: e.cfg.ClientSecret})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		e.cfg.Keeper = k
		if e.flow, err = connect.New(e.cfg); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme", ReturnURL: "/settings"})
		if l.ConnectionID != "acme" || l.ReturnURL != "/settings" || len(l.Token.Reveal()) != 43 ||
			l.ExpiresAt.Before(before.Add(connect.DefaultLinkTTL-time.Second)) || l.ExpiresAt.After(time.Now().Add(connect.DefaultLinkTTL)) {
			t.Fatalf("link %+v: want acme, /settings, a 43-character token, 15 minutes", l)
		}
		q := e.browse(t, e.openLink(t, l.Token.Reveal(), "browser-1"))
		res, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: "browser-1"})
		if err != nil {
			t.Fatalf("Callback: %v", err)
		}
		if res.ReturnURL != "/settings" || res.Connection.ID != "acme" || res.Connection.Subject != companyNordlys {
			t.Errorf("result %+v, connection %+v", res, res.Connection)
		}
		c, err := k.Connection(context.Background(), "acme")
		if err != nil || c.State != tokenkeeper.StateActive {
			t.Fatalf("stored connection %+v, %v; want active", c, err)
		}
		if _, err := k.Token(context.Background(), "acme"); err != nil {
			t.Errorf("Token: %v", err)
		}
		noSecrets(t, "the log", e.logs.String(), l.Token.Reveal(), "browser-1")
		if v := e.violations(); len(v) != 0 {
			t.Errorf("violations: %v", v)
		}
	})
	t.Run("BoundToTheOpeningBrowser", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme"})
		q := e.browse(t, e.openLink(t, l.Token.Reveal(), "browser-1"))
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: "browser-2"})
		wantFlowError(t, err, connect.ReasonWrongBrowser, tokenkeeper.CodeForbidden)
	})
	t.Run("SingleUse", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme", ReturnURL: "/back"})
		const n = 8
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			ok    atomic.Int32
			errs  = make(chan error, n)
		)
		for range n {
			wg.Go(func() {
				<-start
				if _, err := e.flow.OpenLink(context.Background(), l.Token.Reveal(), ""); err != nil {
					errs <- err
					return
				}
				ok.Add(1)
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		if ok.Load() != 1 {
			t.Fatalf("%d of %d concurrent opens succeeded, want exactly 1", ok.Load(), n)
		}
		for err := range errs {
			fe := wantFlowError(t, err, connect.ReasonLinkUnknown, tokenkeeper.CodeNotFound)
			if fe.ConnectionID != "" || fe.ReturnURL != "" {
				t.Errorf("an unknown link names %q and %q", fe.ConnectionID, fe.ReturnURL)
			}
		}
	})
	t.Run("Expired", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme", ReturnURL: "/back", TTL: time.Hour})
		if want := e.clock.Now().Add(time.Hour); !l.ExpiresAt.Equal(want) {
			t.Errorf("ExpiresAt %s, want %s", l.ExpiresAt, want)
		}
		e.clock.Advance(time.Hour)
		_, err := e.flow.OpenLink(context.Background(), l.Token.Reveal(), "")
		fe := wantFlowError(t, err, connect.ReasonLinkExpired, tokenkeeper.CodeInvalid)
		if fe.ConnectionID != "acme" || fe.ReturnURL != "/back" {
			t.Errorf("expired link: ConnectionID %q, ReturnURL %q; want acme, /back", fe.ConnectionID, fe.ReturnURL)
		}
		_, err = e.flow.OpenLink(context.Background(), l.Token.Reveal(), "")
		wantFlowError(t, err, connect.ReasonLinkUnknown, tokenkeeper.CodeNotFound)
	})
	t.Run("LinkIsNotAState", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme"})
		q := url.Values{"state": {l.Token.Reveal()}, "code": {"whatever"}}
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q})
		wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
		e.openLink(t, l.Token.Reveal(), "") // the callback spent nothing
	})
	t.Run("StateIsNotALink", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		authURL := e.begin(t, connect.BeginRequest{ConnectionID: "acme"})
		u, err := url.Parse(authURL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.flow.OpenLink(context.Background(), u.Query().Get("state"), "")
		wantFlowError(t, err, connect.ReasonLinkUnknown, tokenkeeper.CodeNotFound)
		// The state was not spent: its flow still finishes.
		if _, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: e.browse(t, authURL)}); err != nil {
			t.Errorf("Callback after the state was presented as a link: %v", err)
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme"})
		for _, token := range []string{"", "short", l.Token.Reveal() + "=", l.Token.Reveal()[1:], strings.ToUpper(l.Token.Reveal())} {
			_, err := e.flow.OpenLink(context.Background(), token, "")
			wantFlowError(t, err, connect.ReasonLinkUnknown, tokenkeeper.CodeNotFound)
		}
		e.openLink(t, l.Token.Reveal(), "")
	})
}

func TestFlow_NewLink(t *testing.T) {
	t.Run("TTL", func(t *testing.T) {
		e := newEnv(t, autoApprove, func(e *env) { e.cfg.LinkTTL = 2 * time.Hour })
		now := e.clock.Now()
		for _, tc := range []struct{ ttl, want time.Duration }{
			{0, 2 * time.Hour}, {time.Minute, time.Minute}, {connect.MaxLinkTTL, connect.MaxLinkTTL},
		} {
			if l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme", TTL: tc.ttl}); !l.ExpiresAt.Equal(now.Add(tc.want)) {
				t.Errorf("TTL %s: expires at %s, want %s", tc.ttl, l.ExpiresAt, now.Add(tc.want))
			}
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		for _, req := range []connect.LinkRequest{
			{ConnectionID: ""},
			{ConnectionID: "a b"},
			{ConnectionID: "acme", ReturnURL: "https://evil.example/"},
			{ConnectionID: "acme", ReturnURL: "//evil.example/"},
			{ConnectionID: "acme", TTL: -time.Second},
			{ConnectionID: "acme", TTL: connect.MaxLinkTTL + time.Second},
		} {
			if _, err := e.flow.NewLink(context.Background(), req); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid {
				t.Errorf("NewLink(%+v): %v, want invalid", req, err)
			}
		}
		cfg := e.cfg
		cfg.LinkTTL = connect.MaxLinkTTL + time.Second
		if _, err := connect.New(cfg); tokenkeeper.ErrorCode(err) != tokenkeeper.CodeInvalid || !strings.Contains(err.Error(), "LinkTTL") {
			t.Errorf("New with LinkTTL above the maximum: %v, want invalid naming LinkTTL", err)
		}
	})
	t.Run("BeginFailsLinkKept", func(t *testing.T) {
		var fail atomic.Bool
		fs := &failingSessions{fail: &fail}
		e := newEnv(t, autoApprove, func(e *env) {
			fs.Store = e.store
			e.cfg.Store = fs
		})
		l := e.newLink(t, connect.LinkRequest{ConnectionID: "acme", ReturnURL: "/back"})
		fail.Store(true)
		_, err := e.flow.OpenLink(context.Background(), l.Token.Reveal(), "")
		fe := wantFlowError(t, err, connect.ReasonInternal, tokenkeeper.CodeUnavailable)
		if fe.ConnectionID != "acme" || fe.ReturnURL != "/back" {
			t.Errorf("FlowError names %q, %q; want acme, /back", fe.ConnectionID, fe.ReturnURL)
		}
		e.openLink(t, l.Token.Reveal(), "") // put back: the user can try again
	})
}

// failingSessions refuses, while fail is set, to store a flow's session
// (one with a verifier); links are stored.
type failingSessions struct {
	tokenkeeper.Store
	fail *atomic.Bool
}

func (s *failingSessions) CreateSession(ctx context.Context, sess *tokenkeeper.Session) error {
	if !sess.Verifier.IsZero() && s.fail.Swap(false) {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "database is locked")
	}
	return s.Store.CreateSession(ctx, sess)
}
