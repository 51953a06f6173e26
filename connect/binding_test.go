package connect_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// The bindings of two browsers, as a web layer would keep them in a cookie.
const (
	browserA = "Xb8kQ2nV7rLm4pT9sW1yZc6dF3gH5jK0"
	browserB = "Pq7wE2rT9yU4iO1pA6sD3fG8hJ5kL0zX"
)

// countTransport counts the requests it sends.
type countTransport struct{ n atomic.Int32 }

func (c *countTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(req)
}

func TestFlow_Callback_Binding(t *testing.T) {
	tests := []struct {
		name       string
		begin      string // BeginRequest.Binding
		callback   string // CallbackRequest.Binding
		expire     bool   // let the session expire before the callback
		wantReason connect.Reason
	}{
		{name: "SameBrowser", begin: browserA, callback: browserA},
		{name: "Unbound", begin: "", callback: ""},
		// A session begun without a binding accepts any callback (the
		// weaker, backwards-compatible mode).
		{name: "UnboundWithBinding", begin: "", callback: browserB},
		{name: "ErrOtherBrowser", begin: browserA, callback: browserB, wantReason: connect.ReasonWrongBrowser},
		{name: "ErrNoBinding", begin: browserA, callback: "", wantReason: connect.ReasonWrongBrowser},
		{name: "ErrBindingPrefix", begin: browserA, callback: browserA[:16], wantReason: connect.ReasonWrongBrowser},
		// The browser is checked before the expiry, so that another
		// browser does not learn the flow's return URL.
		{name: "ErrOtherBrowserExpired", begin: browserA, callback: browserB, expire: true, wantReason: connect.ReasonWrongBrowser},
		{name: "ExpiredSameBrowser", begin: browserA, callback: browserA, expire: true, wantReason: connect.ReasonStateExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := &countTransport{}
			e := newEnv(t, autoApprove, func(e *env) { e.cfg.HTTPClient = &http.Client{Transport: ct} })
			q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back", Binding: tt.begin}))
			if tt.expire {
				e.clock.Advance(connect.DefaultSessionTTL)
			}
			res, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: tt.callback})
			noSecrets(t, "the log", e.logs.String(), browserA, browserB, q.Get("state"), q.Get("code"))

			switch tt.wantReason {
			case "":
				if err != nil {
					t.Fatalf("Callback: %v", err)
				}
				if res.Connection.ID != "acme" || res.ReturnURL != "/back" || res.Connection.Subject != companyNordlys {
					t.Errorf("Result %+v, %+v; want acme for %s, returning to /back", res, res.Connection, companyNordlys)
				}
				if v := e.violations(); len(v) != 0 {
					t.Errorf("the emulator saw violations: %v", v)
				}
				return
			case connect.ReasonStateExpired:
				fe := wantFlowError(t, err, connect.ReasonStateExpired, tokenkeeper.CodeInvalid)
				if fe.ReturnURL != "/back" || fe.ConnectionID != "acme" {
					t.Errorf("got ReturnURL %q, ConnectionID %q; want /back and acme", fe.ReturnURL, fe.ConnectionID)
				}
				return
			}

			fe := wantFlowError(t, err, tt.wantReason, tokenkeeper.CodeForbidden)
			if fe.ReturnURL != "" || fe.ConnectionID != "" {
				t.Errorf("another browser got ReturnURL %q, ConnectionID %q; want none", fe.ReturnURL, fe.ConnectionID)
			}
			checkNoFlowSecrets(t, err, browserA, browserB, q.Get("state"), q.Get("code"))
			if !strings.Contains(tokenkeeper.ErrorMessage(err), "another browser") {
				t.Errorf("message %q does not say another browser began the flow", tokenkeeper.ErrorMessage(err))
			}
			// The code was not exchanged, nothing was stored, and the
			// operator hears of it.
			if n := ct.n.Load(); n != 0 {
				t.Errorf("the callback sent %d requests to the provider, want 0", n)
			}
			if n := len(e.keeper.Grants()); n != 0 {
				t.Errorf("Keeper.Connect called %d times, want 0", n)
			}
			if logs := e.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "another browser") {
				t.Errorf("no warning about the browser in the log:\n%s", logs)
			}
			// The state is spent: even the right browser cannot use it now.
			_, err = e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: tt.begin})
			wantFlowError(t, err, connect.ReasonStateUnknown, tokenkeeper.CodeInvalid)
		})
	}

	// The redirect's error is read only once the browser is checked: a
	// denial does not tell another browser where the flow returns to.
	t.Run("ErrOtherBrowserDenied", func(t *testing.T) {
		e := newEnv(t, emulator.Config{}, nil) // the consent page, and a user who says no
		q := e.deny(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back", Binding: browserA}))
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: browserB})
		fe := wantFlowError(t, err, connect.ReasonWrongBrowser, tokenkeeper.CodeForbidden)
		if fe.ReturnURL != "" || fe.ConnectionID != "" || fe.ProviderCode != "" {
			t.Errorf("another browser got %+v; want no ReturnURL, ConnectionID or ProviderCode", fe)
		}
	})

	// A sealer that is unavailable is not a wrong browser: retrying may
	// help.
	t.Run("ErrSealerUnavailable", func(t *testing.T) {
		fs := &flakySealer{}
		e := newEnv(t, autoApprove, func(e *env) {
			fs.Sealer = e.sealer
			e.cfg.Sealer = fs
		})
		q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back", Binding: browserA}))
		fs.down.Store(true)
		_, err := e.flow.Callback(context.Background(), connect.CallbackRequest{Query: q, Binding: browserA})
		fe := wantFlowError(t, err, connect.ReasonInternal, tokenkeeper.CodeUnavailable)
		if fe.ReturnURL != "" || fe.ConnectionID != "" {
			t.Errorf("an unchecked browser got ReturnURL %q, ConnectionID %q; want none", fe.ReturnURL, fe.ConnectionID)
		}
	})

	// An AEAD cannot tell a wrong binding from a key that is gone: a
	// session the sealer cannot open reads as another browser's, and the
	// log has the sealer's error.
	t.Run("ErrSessionUnopenable", func(t *testing.T) {
		e := newEnv(t, autoApprove, nil)
		q := e.browse(t, e.begin(t, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/back"}))
		data, err := seal.Generate()
		if err != nil {
			t.Fatal(err)
		}
		other, err := seal.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.cfg
		cfg.Sealer = other
		f, err := connect.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Callback(context.Background(), connect.CallbackRequest{Query: q})
		wantFlowError(t, err, connect.ReasonWrongBrowser, tokenkeeper.CodeForbidden)
		if logs := e.logs.String(); !strings.Contains(logs, "cannot be opened") || !strings.Contains(logs, "error=") {
			t.Errorf("the log does not hold the sealer's error:\n%s", logs)
		}
	})
}

// flakySealer is a Sealer whose Open fails with CodeUnavailable while down
// is set.
type flakySealer struct {
	tokenkeeper.Sealer
	down atomic.Bool
}

func (s *flakySealer) Open(sealed tokenkeeper.Sealed, ad []byte) ([]byte, error) {
	if s.down.Load() {
		return nil, tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "the key service is down")
	}
	return s.Sealer.Open(sealed, ad)
}
