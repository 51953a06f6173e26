package connect_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"

	"github.com/tokenkeeper/tokenkeeper/connect"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// ExampleFlow_NewLink makes a single-use connect link, as an integrator's
// backend would (POST /v1/connect-sessions), and follows it as the end
// user's browser: opening it begins a flow bound to that browser.
func ExampleFlow_NewLink() {
	ctx := context.Background()
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	flow, cleanup := exampleFlow(srv) // as in the Begin example
	defer cleanup()

	link, err := flow.NewLink(ctx, connect.LinkRequest{ConnectionID: "acme", ReturnURL: "/settings"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("token: %d characters, for %s\n", len(link.Token.Reveal()), link.ConnectionID)

	// The handler of the link's URL: a cookie binds the flow to the
	// browser (HttpOnly, Secure, SameSite=Lax), then the browser goes on
	// to the provider.
	binding := rand.Text()
	authURL, err := flow.OpenLink(ctx, link.Token.Reveal(), binding)
	if err != nil {
		log.Fatal(err)
	}
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(authURL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	redirect, _ := url.Parse(resp.Header.Get("Location"))
	res, err := flow.Callback(ctx, connect.CallbackRequest{Query: redirect.Query(), Binding: binding})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("connected", res.Connection.ID, "and return to", res.ReturnURL)

	// The link worked once.
	_, err = flow.OpenLink(ctx, link.Token.Reveal(), binding)
	var fe *connect.FlowError
	if errors.As(err, &fe) {
		fmt.Println(fe.Reason)
	}
	// Output:
	// token: 43 characters, for acme
	// connected acme and return to /settings
	// link_unknown
}
