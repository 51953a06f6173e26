package keeper_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/emulator"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// exampleSetup is what the examples share: a Pleo emulator that approves
// at once, a SQLite file in a temporary directory, and a keyring with a new
// key. In production these are Pleo, your database file and your keyset
// (seal.Load).
type exampleSetup struct {
	srv    *emulator.Server
	store  *sqlite.Store
	ring   *seal.Keyring
	dir    string
	closer []func()
}

func newExampleSetup() *exampleSetup {
	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
	if err != nil {
		log.Fatal(err)
	}
	x := &exampleSetup{srv: srv}
	x.closer = append(x.closer, func() { srv.Close() })
	if x.dir, err = os.MkdirTemp("", "tokenkeeper-example-"); err != nil {
		log.Fatal(err)
	}
	x.closer = append(x.closer, func() { os.RemoveAll(x.dir) })
	if x.store, err = sqlite.Open(context.Background(), filepath.Join(x.dir, "tokenkeeper.db")); err != nil {
		log.Fatal(err)
	}
	x.closer = append(x.closer, func() { x.store.Close() })
	data, err := seal.Generate()
	if err != nil {
		log.Fatal(err)
	}
	ks, err := seal.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	x.ring = seal.NewKeyring(ks)
	return x
}

// config returns a Config for the emulator's demo client.
func (x *exampleSetup) config() keeper.Config {
	client := emulator.DemoClient()
	return keeper.Config{
		Store:        x.store,
		Sealer:       x.ring,
		Provider:     tokenkeeper.CustomProvider(x.srv.URL+"/oauth/authorize", x.srv.URL+"/oauth/token", x.srv.APIURL),
		ClientID:     client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret),
		Now:          x.srv.Now, // the emulator's clock, which the examples move forward
	}
}

// keeper returns a Keeper on the setup, closed with it.
func (x *exampleSetup) keeper(cfg keeper.Config) *keeper.Keeper {
	k, err := keeper.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	x.closer = append(x.closer, func() { k.Close() })
	return k
}

// connect runs the authorization code flow with PKCE against the emulator
// (the connect package's job in production) and hands the grant to k.
func (x *exampleSetup) connect(k *keeper.Keeper, id tokenkeeper.ConnectionID) {
	client := emulator.DemoClient()
	cfg := oauth2.Config{ClientID: client.ID, ClientSecret: client.Secret, RedirectURL: client.RedirectURIs[0], Scopes: []string{"users:read"},
		Endpoint: oauth2.Endpoint{AuthURL: x.srv.URL + "/oauth/authorize", TokenURL: x.srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	sum := sha256.Sum256([]byte(verifier))
	authURL := cfg.AuthCodeURL("example-state", oauth2.SetAuthURLParam("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:])),
		oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "example-state" {
		log.Fatalf("authorize: status %d", resp.StatusCode)
	}
	sent := x.srv.Now()
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		log.Fatal(err)
	}
	_, err = k.Connect(context.Background(), tokenkeeper.Grant{
		ConnectionID: id, Provider: tokenkeeper.ProviderCustom, Scopes: []string{"users:read"},
		Tokens: tokenkeeper.TokenSet{
			AccessToken:  tokenkeeper.NewSecret(tok.AccessToken),
			RefreshToken: tokenkeeper.NewSecret(tok.RefreshToken),
			Expiry:       sent.Add(time.Duration(tok.ExpiresIn) * time.Second),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// introspect calls the emulator's API with c and returns the status.
func (x *exampleSetup) introspect(c *http.Client) int {
	resp, err := c.Get(x.srv.APIURL + "/v1/introspect")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// introspectWith calls the API with tok as the bearer token.
func (x *exampleSetup) introspectWith(tok tokenkeeper.Secret) int {
	req, err := http.NewRequest(http.MethodGet, x.srv.APIURL+"/v1/introspect", nil)
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (x *exampleSetup) close() {
	for i := len(x.closer) - 1; i >= 0; i-- {
		x.closer[i]()
	}
}

func ExampleNew() {
	x := newExampleSetup()
	defer x.close()

	// Store, Sealer, Provider and ClientID are required.
	_, err := keeper.New(keeper.Config{Provider: tokenkeeper.PleoProvider(), ClientID: "my-client"})
	fmt.Println("without a store:", tokenkeeper.ErrorCode(err))

	client := emulator.DemoClient()
	k, err := keeper.New(keeper.Config{
		Store:        x.store,
		Sealer:       x.ring,
		Provider:     tokenkeeper.CustomProvider(x.srv.URL+"/oauth/authorize", x.srv.URL+"/oauth/token", x.srv.APIURL),
		ClientID:     client.ID,
		ClientSecret: tokenkeeper.NewSecret(client.Secret),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	fmt.Println("keeper ready:", k.Owner() != "")
	// Output:
	// without a store: invalid
	// keeper ready: true
}

func ExampleKeeper_Token() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	x.connect(k, "acme")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := k.Token(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	// Use the token at once, and never after tok.ExpiresAt.
	fmt.Println("valid now:", tok.Valid(x.srv.Now()))
	fmt.Println("API status:", x.introspectWith(tok.Value))

	_, err = k.Token(ctx, "unknown")
	fmt.Println("unknown connection:", tokenkeeper.ErrorCode(err))
	// Output:
	// valid now: true
	// API status: 200
	// unknown connection: not_found
}

func ExampleKeeper_TokenSource() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	x.connect(k, "acme")

	// For code written against golang.org/x/oauth2. Do not wrap the source
	// in oauth2.ReuseTokenSource: the keeper caches already.
	src := k.TokenSource("acme", 10*time.Second)
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("type:", tok.TokenType, "valid:", tok.Valid())

	client := oauth2.NewClient(context.Background(), src)
	fmt.Println("API status:", x.introspect(client))
	// Output:
	// type: Bearer valid: true
	// API status: 200
}

func ExampleKeeper_Client() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	x.connect(k, "acme")

	// Every request carries the connection's current token; a 401 on a
	// replayable request refreshes once and retries.
	client := k.Client("acme", nil)
	fmt.Println("API status:", x.introspect(client))

	_, err := k.Client("unknown", nil).Get(x.srv.APIURL + "/v1/introspect")
	fmt.Println("unknown connection:", tokenkeeper.ErrorCode(err))
	// Output:
	// API status: 200
	// unknown connection: not_found
}

func ExampleKeeper_Transport() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	x.connect(k, "acme")

	// Put the keeper's Transport over your own, for timeouts and the like.
	client := &http.Client{
		Transport: k.Transport("acme", http.DefaultTransport),
		Timeout:   30 * time.Second,
	}
	fmt.Println("API status:", x.introspect(client))
	// Output:
	// API status: 200
}

func ExampleKeeper_Invalidate() {
	x := newExampleSetup()
	defer x.close()
	k := x.keeper(x.config())
	x.connect(k, "acme")
	ctx := context.Background()

	old, err := k.Token(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	// Suppose the API answered 401 to old: report it, and get a fresh token.
	// A storm of such reports for the same token costs one refresh.
	fresh, err := k.Invalidate(ctx, "acme", old.Value)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new token:", !fresh.Value.Equal(old.Value))
	fmt.Println("API status with the new token:", x.introspectWith(fresh.Value))
	// The refresh rotated the old token out.
	fmt.Println("API status with the old token:", x.introspectWith(old.Value))

	// Reporting the old token again changes nothing: it is no longer current.
	again, err := k.Invalidate(ctx, "acme", old.Value)
	fmt.Println("same new token:", err == nil && again.Value.Equal(fresh.Value))
	// Output:
	// new token: true
	// API status with the new token: 200
	// API status with the old token: 401
	// same new token: true
}

func ExampleKeeper_Run() {
	x := newExampleSetup()
	defer x.close()
	cfg := x.config()
	cfg.ScheduleInterval = 10 * time.Millisecond // default 1s
	cfg.DrainGrace = 10 * time.Millisecond       // default 1s
	k := x.keeper(cfg)
	x.connect(k, "acme")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	old, err := k.Token(ctx, "acme") // a connection in use is "hot"
	if err != nil {
		log.Fatal(err)
	}
	before, err := k.Connection(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()

	// Thirteen minutes later, the token's promise has ended: Run refreshes
	// it without waiting for a caller.
	if _, err := x.srv.Advance(13 * time.Minute); err != nil {
		log.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := k.Connection(ctx, "acme")
		if err != nil {
			log.Fatal(err)
		}
		if c.LastRefreshAt.After(before.LastRefreshAt) {
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("no proactive refresh")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("refreshed ahead of any caller: true")
	cancel()
	fmt.Println("Run returned:", <-done)

	tok, err := k.Token(context.Background(), "acme")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new token:", !tok.Value.Equal(old.Value))
	fmt.Println("API status:", x.introspectWith(tok.Value))
	// Output:
	// refreshed ahead of any caller: true
	// Run returned: <nil>
	// new token: true
	// API status: 200
}
