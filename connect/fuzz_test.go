package connect_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// FuzzFlow_Callback feeds Callback arbitrary redirect queries. Each run
// begins a fresh flow first; "STATE" in the input stands for its genuine
// state, so the fuzzer explores what follows a verified state too. Each run
// also makes two fresh browser bindings; begin and callback pick the
// binding Begin and Callback get: 0 none, 1 the first, 2 the second (modulo
// 3).
//
// Callback must not panic, must fail with a *connect.FlowError carrying a
// valid code, must name a connection or a return URL only if the query's
// one state is the genuine one and the browser is the one that began the
// flow (or the flow is unbound), must fail with ReasonWrongBrowser for a
// genuine state from another browser, and must not echo the state or a
// binding.
func FuzzFlow_Callback(f *testing.F) {
	for _, seed := range []string{
		"",
		"state=STATE&code=pac_x",
		"state=STATE&error=access_denied&error_description=no",
		"state=other&code=pac_x",
	} {
		for _, b := range [][2]byte{{0, 0}, {1, 1}, {1, 2}, {1, 0}, {0, 2}} {
			f.Add(seed, b[0], b[1])
		}
	}
	e := newEnv(f, autoApprove, func(e *env) { e.cfg.Logger = slog.New(slog.DiscardHandler) })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string, begin, callback byte) {
		bindings := [3]string{"", rand.Text(), rand.Text()}
		beginBinding, callbackBinding := bindings[begin%3], bindings[callback%3]
		authURL, err := e.flow.Begin(ctx, connect.BeginRequest{ConnectionID: "fuzz", ReturnURL: "/back", Binding: beginBinding})
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		u, _ := url.Parse(authURL)
		state := u.Query().Get("state")
		q, _ := url.ParseQuery(strings.ReplaceAll(raw, "STATE", state)) // keeps what parses
		verified := slices.Equal(q["state"], []string{state})
		sameBrowser := beginBinding == "" || callbackBinding == beginBinding

		res, err := e.flow.Callback(ctx, connect.CallbackRequest{Query: q, Binding: callbackBinding})
		if err == nil {
			if !verified || !sameBrowser || res.ReturnURL != "/back" || res.Connection.ID != "fuzz" {
				t.Fatalf("Callback(%q, binding %d/%d) succeeded with %+v", raw, begin%3, callback%3, res)
			}
			return
		}
		var fe *connect.FlowError
		if !errors.As(err, &fe) {
			t.Fatalf("Callback(%q) error %v (%T) is not a *connect.FlowError", raw, err, err)
		}
		if !tokenkeeper.ErrorCode(err).Valid() || tokenkeeper.ErrorMessage(err) == "" {
			t.Fatalf("Callback(%q) error %v has code %q and message %q", raw, err, tokenkeeper.ErrorCode(err), tokenkeeper.ErrorMessage(err))
		}
		named := fe.ReturnURL != "" || fe.ConnectionID != ""
		switch {
		case !verified:
			if named || (fe.Reason != connect.ReasonStateMissing && fe.Reason != connect.ReasonStateUnknown) {
				t.Fatalf("Callback(%q) with an unverified state got %+v", raw, fe)
			}
		case !sameBrowser:
			if named || fe.Reason != connect.ReasonWrongBrowser || tokenkeeper.ErrorCode(err) != tokenkeeper.CodeForbidden {
				t.Fatalf("Callback(%q) from another browser (binding %d/%d) got %+v", raw, begin%3, callback%3, fe)
			}
		case fe.ReturnURL != "/back" || fe.ConnectionID != "fuzz":
			t.Fatalf("Callback(%q) with the genuine state, binding %d/%d, lost the session: %+v", raw, begin%3, callback%3, fe)
		}
		for _, secret := range []string{state, bindings[1], bindings[2]} {
			if strings.Contains(err.Error(), secret) || strings.Contains(tokenkeeper.ErrorMessage(err), secret) {
				t.Fatalf("Callback(%q) error echoes the state or a binding: %v", raw, err)
			}
		}
	})
}

// FuzzFlow_OpenLink feeds OpenLink arbitrary tokens. Each run makes a
// fresh link first; "LINK" in the input stands for its genuine token.
// OpenLink must not panic, must succeed only for the genuine token, must
// otherwise fail with ReasonLinkUnknown and name nothing, and must not
// echo the token.
func FuzzFlow_OpenLink(f *testing.F) {
	for _, seed := range []string{"", "LINK", "LINK=", "xLINK", "LINK\x00", "%4C%49%4E%4B", strings.Repeat("A", 43)} {
		f.Add(seed)
	}
	e := newEnv(f, autoApprove, func(e *env) { e.cfg.Logger = slog.New(slog.DiscardHandler) })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		l, err := e.flow.NewLink(ctx, connect.LinkRequest{ConnectionID: "fuzz", ReturnURL: "/back"})
		if err != nil {
			t.Fatalf("NewLink: %v", err)
		}
		token := strings.ReplaceAll(raw, "LINK", l.Token.Reveal())
		authURL, err := e.flow.OpenLink(ctx, token, "")
		if err == nil {
			if token != l.Token.Reveal() || authURL == "" {
				t.Fatalf("OpenLink(%q) succeeded", raw)
			}
			return
		}
		var fe *connect.FlowError
		if !errors.As(err, &fe) {
			t.Fatalf("OpenLink(%q) error %v (%T) is not a *connect.FlowError", raw, err, err)
		}
		if fe.Reason != connect.ReasonLinkUnknown || fe.ConnectionID != "" || fe.ReturnURL != "" || tokenkeeper.ErrorCode(err) != tokenkeeper.CodeNotFound {
			t.Fatalf("OpenLink(%q) got %+v (%v)", raw, fe, err)
		}
		if strings.Contains(err.Error(), l.Token.Reveal()) {
			t.Fatalf("OpenLink(%q) error echoes the token: %v", raw, err)
		}
	})
}
