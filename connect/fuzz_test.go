package connect_test

import (
	"context"
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
// state, so the fuzzer explores what follows a verified state too.
//
// Callback must not panic, must fail with a *connect.FlowError carrying a
// valid code, must name a connection or a return URL only if the query's
// one state is the genuine one, and must not echo the state.
func FuzzFlow_Callback(f *testing.F) {
	for _, seed := range []string{
		"",
		"state=STATE&code=pac_x",
		"state=STATE&error=access_denied&error_description=no",
		"state=other&code=pac_x",
	} {
		f.Add(seed)
	}
	e := newEnv(f, autoApprove, func(e *env) { e.cfg.Logger = slog.New(slog.DiscardHandler) })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw string) {
		authURL, err := e.flow.Begin(ctx, connect.BeginRequest{ConnectionID: "fuzz", ReturnURL: "/back"})
		if err != nil {
			t.Fatalf("Begin: %v", err)
		}
		u, _ := url.Parse(authURL)
		state := u.Query().Get("state")
		q, _ := url.ParseQuery(strings.ReplaceAll(raw, "STATE", state)) // keeps what parses
		verified := slices.Equal(q["state"], []string{state})

		res, err := e.flow.Callback(ctx, q)
		if err == nil {
			if !verified || res.ReturnURL != "/back" || res.Connection.ID != "fuzz" {
				t.Fatalf("Callback(%q) succeeded with %+v", raw, res)
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
		if (fe.ReturnURL != "" || fe.ConnectionID != "") && !verified {
			t.Fatalf("Callback(%q) with an unverified state named ReturnURL %q, ConnectionID %q", raw, fe.ReturnURL, fe.ConnectionID)
		}
		if verified && (fe.ReturnURL != "/back" || fe.ConnectionID != "fuzz") {
			t.Fatalf("Callback(%q) with the genuine state lost the session: %+v", raw, fe)
		}
		if strings.Contains(err.Error(), state) || strings.Contains(tokenkeeper.ErrorMessage(err), state) {
			t.Fatalf("Callback(%q) error echoes the state: %v", raw, err)
		}
	})
}
