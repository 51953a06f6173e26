package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// ExampleServer connects a golang.org/x/oauth2 client to the emulator with the
// authorization code flow and PKCE, calls the API, and reads the ledger.
func ExampleServer() {
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	c := emulator.DemoClient()
	conf := &oauth2.Config{
		ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURIs[0],
		Scopes: []string{"users:read"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.URL + "/oauth/authorize",
			TokenURL:  srv.URL + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader, // Pleo requires client_secret_basic
		},
	}

	// AutoApprove skips the consent page: the authorise request redirects at once to the
	// client's redirect URI with a code. A browser would follow it; here we read it.
	verifier := oauth2.GenerateVerifier()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := noFollow.Get(conf.AuthCodeURL("some-state", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))

	ctx := context.Background()
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		log.Fatal(err)
	}

	res, err := conf.Client(ctx, tok).Get(srv.APIURL + "/v1/introspect")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	var who struct {
		ApplicationName string `json:"applicationName"`
		SubjectURN      string `json:"subjectURN"`
	}
	if err := json.NewDecoder(res.Body).Decode(&who); err != nil {
		log.Fatal(err)
	}
	fmt.Println(who.ApplicationName, "is connected to", who.SubjectURN)
	fmt.Println("violations:", len(srv.Report().Violations))
	// Output:
	// Demo Integration is connected to urn:pleo:company:8d1c3f52-6a4e-4a11-9c0b-1f2e3d4c5b6a
	// violations: 0
}
