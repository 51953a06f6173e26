package connect_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// ExampleFlow_Begin starts a connect flow against the Pleo emulator and shows
// the authorisation URL the user is sent to.
func ExampleFlow_Begin() {
	ctx := context.Background()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// The sessions live in the Store; the Sealer seals their PKCE verifiers.
	dir, err := os.MkdirTemp("", "connect-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "tokenkeeper.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	keyset, err := seal.Generate()
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := seal.Parse(keyset)
	if err != nil {
		log.Fatal(err)
	}

	client := emulator.DemoClient()
	flow, err := connect.New(connect.Config{
		Provider:     tokenkeeper.CustomProvider(srv.URL+"/oauth/authorize", srv.URL+"/oauth/token", srv.APIURL),
		ClientID:     client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret),
		RedirectURL:  client.RedirectURIs[0],
		Scopes:       []string{"users:read"},
		Store:        store,
		Sealer:       sealer,
		Keeper:       newMemKeeper(), // in a program: a *keeper.Keeper
	})
	if err != nil {
		log.Fatal(err)
	}

	authURL, err := flow.Begin(ctx, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/settings"})
	if err != nil {
		log.Fatal(err)
	}
	// An HTTP handler would now redirect the browser: http.Redirect(w, r, authURL, http.StatusSeeOther).
	u, _ := url.Parse(authURL)
	q := u.Query()
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "code_challenge_method"} {
		fmt.Printf("%s=%s\n", k, q.Get(k))
	}
	fmt.Printf("state: %d characters, code_challenge: %d characters\n", len(q.Get("state")), len(q.Get("code_challenge")))
	// Output:
	// response_type=code
	// client_id=demo-client
	// redirect_uri=http://localhost:8080/oauth/callback
	// scope=users:read
	// code_challenge_method=S256
	// state: 43 characters, code_challenge: 43 characters
}

// ExampleFlow_Callback runs a whole connect flow against the Pleo emulator:
// Begin, the user's visit to the provider, and the callback.
func ExampleFlow_Callback() {
	ctx := context.Background()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	flow, cleanup := exampleFlow(srv) // as in the Begin example
	defer cleanup()

	authURL, err := flow.Begin(ctx, connect.BeginRequest{ConnectionID: "acme", ReturnURL: "/settings"})
	if err != nil {
		log.Fatal(err)
	}
	// The browser's part: the emulator approves at once and redirects to
	// the redirect URL with a code and the state.
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(authURL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	redirect, _ := url.Parse(resp.Header.Get("Location"))

	// The redirect URL's handler passes the query on.
	res, err := flow.Callback(ctx, connect.CallbackRequest{Query: redirect.Query()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("connected", res.Connection.ID, "to", res.Connection.Subject)
	fmt.Println("return to", res.ReturnURL)

	// A state works once. Failures are *connect.FlowError, with a reason.
	_, err = flow.Callback(ctx, connect.CallbackRequest{Query: redirect.Query()})
	var fe *connect.FlowError
	if errors.As(err, &fe) {
		fmt.Printf("again: %s (%s): %s\n", fe.Reason, tokenkeeper.ErrorCode(err), tokenkeeper.ErrorMessage(err))
	}
	fmt.Println("violations:", len(srv.Report().Violations))
	// Output:
	// connected acme to urn:pleo:company:8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a
	// return to /settings
	// again: state_unknown (invalid): the callback's state is unknown or already used; start connecting again
	// violations: 0
}

// ExampleFlow_Callback_binding binds flows to the browser that began them,
// so that nobody can send a victim's browser to the callback with the code
// of a consent they gave themselves (login CSRF, RFC 6749 section 10.12).
func ExampleFlow_Callback_binding() {
	ctx := context.Background()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	flow, cleanup := exampleFlow(srv)
	defer cleanup()
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	visit := func(authURL string) url.Values {
		resp, err := browser.Get(authURL)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		redirect, _ := url.Parse(resp.Header.Get("Location"))
		return redirect.Query()
	}

	// The web layer's begin handler makes a random value, keeps it in the
	// browser, and binds the flow to it:
	//
	//	binding := rand.Text()
	//	http.SetCookie(w, &http.Cookie{Name: "connect_binding", Value: binding, Path: "/oauth/callback",
	//		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	mine, theirs := rand.Text(), rand.Text()
	authURL, err := flow.Begin(ctx, connect.BeginRequest{ConnectionID: "acme", Binding: mine})
	if err != nil {
		log.Fatal(err)
	}
	query := visit(authURL)

	// Its callback handler passes the cookie's value on. Another browser
	// (with another cookie, or none) cannot finish the flow, and spends
	// its state.
	_, err = flow.Callback(ctx, connect.CallbackRequest{Query: query, Binding: theirs})
	var fe *connect.FlowError
	if errors.As(err, &fe) {
		fmt.Printf("another browser: %s (%s): %s\n", fe.Reason, tokenkeeper.ErrorCode(err), tokenkeeper.ErrorMessage(err))
	}

	// The browser that began a flow finishes it.
	authURL, err = flow.Begin(ctx, connect.BeginRequest{ConnectionID: "acme", Binding: mine})
	if err != nil {
		log.Fatal(err)
	}
	res, err := flow.Callback(ctx, connect.CallbackRequest{Query: visit(authURL), Binding: mine})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the same browser: connected", res.Connection.ID)
	// Output:
	// another browser: wrong_browser (forbidden): this sign-in was started in another browser; start connecting again in this one
	// the same browser: connected acme
}

// exampleFlow returns a Flow for the demo client of srv, as ExampleFlow_Begin
// builds it, and a function that frees its resources.
func exampleFlow(srv *emulator.Server) (*connect.Flow, func()) {
	dir, err := os.MkdirTemp("", "connect-example")
	if err != nil {
		log.Fatal(err)
	}
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "tokenkeeper.db"))
	if err != nil {
		log.Fatal(err)
	}
	keyset, err := seal.Generate()
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := seal.Parse(keyset)
	if err != nil {
		log.Fatal(err)
	}
	client := emulator.DemoClient()
	flow, err := connect.New(connect.Config{
		Provider:     tokenkeeper.CustomProvider(srv.URL+"/oauth/authorize", srv.URL+"/oauth/token", srv.APIURL),
		ClientID:     client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret),
		RedirectURL:  client.RedirectURIs[0],
		Scopes:       []string{"users:read"},
		Store:        store,
		Sealer:       sealer,
		Keeper:       newMemKeeper(),
	})
	if err != nil {
		log.Fatal(err)
	}
	return flow, func() { store.Close(); os.RemoveAll(dir) }
}

// memKeeper keeps connections in memory: the examples' stand-in for a
// *keeper.Keeper.
type memKeeper struct {
	mu    sync.Mutex
	conns map[tokenkeeper.ConnectionID]*tokenkeeper.Connection
}

func newMemKeeper() *memKeeper {
	return &memKeeper{conns: map[tokenkeeper.ConnectionID]*tokenkeeper.Connection{}}
}

func (k *memKeeper) Connect(_ context.Context, g tokenkeeper.Grant) (*tokenkeeper.Connection, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.conns[g.ConnectionID]
	if c == nil {
		c = &tokenkeeper.Connection{ID: g.ConnectionID}
		k.conns[g.ConnectionID] = c
	}
	// The subject is written with the tokens, as *keeper.Keeper does.
	c.Provider, c.Subject, c.Scopes, c.State = g.Provider, g.Subject, g.Scopes, tokenkeeper.StateActive
	c.Generation++
	cp := *c
	return &cp, nil
}
