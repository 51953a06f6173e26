package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// oauth2Config is an x/oauth2 client configuration for testClient against srv.
func oauth2Config(srv *emulator.Server) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     testClient.ID,
		ClientSecret: testClient.Secret,
		RedirectURL:  testClient.RedirectURIs[0],
		Scopes:       []string{"users:read", "export-jobs:read"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.URL + "/oauth/authorize",
			TokenURL:  srv.URL + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
}

// whoAmI calls GET /v1/introspect through client and returns the subject URN.
func whoAmI(t *testing.T, client *http.Client, srv *emulator.Server) string {
	t.Helper()
	resp, err := client.Get(srv.APIURL + "/v1/introspect")
	if err != nil {
		t.Fatalf("GET /v1/introspect: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		SubjectURN string `json:"subjectURN"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/introspect: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /v1/introspect: %v", err)
	}
	return body.SubjectURN
}

// TestOAuth2 drives the emulator with golang.org/x/oauth2, a real and widely used client:
// if it works unchanged, the emulator speaks standard OAuth 2.0 on the wire.
func TestOAuth2(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	ctx := context.Background()
	conf := oauth2Config(srv)

	verifier := oauth2.GenerateVerifier()
	const state = "state-from-x-oauth2"
	resp, err := noRedirects.Get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != state {
		t.Fatalf("state = %q, want %q", got, state)
	}

	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || !tok.Valid() {
		t.Fatalf("exchange: token %+v, want a valid Bearer token with a refresh token", tok)
	}
	if left := time.Until(tok.Expiry); left < 14*time.Minute || left > 15*time.Minute {
		t.Errorf("token expires in %s, want about 15m (expires_in)", left)
	}
	if got := whoAmI(t, conf.Client(ctx, tok), srv); got != nordlysURN {
		t.Errorf("subject = %q, want %q", got, nordlysURN)
	}

	// Make the token expire from x/oauth2's point of view; the TokenSource must refresh.
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	ts := conf.TokenSource(ctx, &stale)
	fresh, err := ts.Token()
	if err != nil {
		t.Fatalf("refresh through TokenSource: %v", err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken {
		t.Errorf("TokenSource did not rotate both tokens")
	}
	if again, err := ts.Token(); err != nil || again.AccessToken != fresh.AccessToken {
		t.Errorf("second Token() = %v, %v; want the cached fresh token", again, err)
	}
	if got := whoAmI(t, oauth2.NewClient(ctx, ts), srv); got != nordlysURN {
		t.Errorf("subject after refresh = %q, want %q", got, nordlysURN)
	}

	rep := srv.Report()
	if len(rep.Violations) != 0 {
		t.Errorf("violations = %+v, want none", rep.Violations)
	}
	if len(rep.Authorisations) != 1 || rep.Authorisations[0].Refreshes != 1 {
		t.Errorf("authorisations = %+v, want one, refreshed once", rep.Authorisations)
	}
}

// TestOAuth2_InvalidGrant checks that x/oauth2 sees the RFC 6749 error code of a dead
// authorisation in its *RetrieveError.
func TestOAuth2_InvalidGrant(t *testing.T) {
	srv := startServer(t, emulator.Config{AutoApprove: true})
	tok := connect(t, srv)
	if err := srv.Revoke(lastAuthorisation(t, srv).ID); err != nil {
		t.Fatal(err)
	}
	ts := oauth2Config(srv).TokenSource(context.Background(), &oauth2.Token{
		AccessToken: tok.Access, RefreshToken: tok.Refresh, Expiry: time.Now().Add(-time.Minute)})
	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
		t.Fatalf("Token() error = %v, want a RetrieveError with invalid_grant", err)
	}
	if v := violations(srv); v != nil {
		t.Errorf("violations = %v, want none", v)
	}
}
