package emulator_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// startRemote starts an auto-approving emulator and a Remote that drives it.
func startRemote(t *testing.T) (*emulator.Server, *emulator.Remote) {
	t.Helper()
	srv := startServer(t, emulator.Config{AutoApprove: true})
	return srv, &emulator.Remote{URL: srv.URL}
}

func TestRemote_Clock(t *testing.T) {
	ctx := context.Background()
	srv, rm := startRemote(t)
	tk := connect(t, srv)
	got, err := rm.Advance(ctx, 16*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got.Offset != emulator.Duration(16*time.Minute) {
		t.Errorf("Advance: offset %v, want 16m", time.Duration(got.Offset))
	}
	read, err := rm.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if read.Offset != got.Offset || read.Now.Before(got.Now) {
		t.Errorf("Clock = %+v after Advance returned %+v", read, got)
	}
	if status, _, _ := apiGet(t, srv, "/v1/introspect", tk.Access); status != http.StatusUnauthorized {
		t.Errorf("API after 16m: status %d, want 401", status)
	}
	if _, err := rm.Advance(ctx, -time.Second); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("Advance(-1s) = %v, want an HTTP 400 error", err)
	}
}

func TestRemote_Report(t *testing.T) {
	srv, rm := startRemote(t)
	tk := connect(t, srv)
	status, body := refresh(t, srv, tk.Refresh)
	tokensFrom(t, status, body)
	apiGet(t, srv, "/v1/introspect", tk.Access) // stale_access_token
	got, err := rm.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := srv.Report()
	if diff := cmp.Diff(want.Authorisations, got.Authorisations); diff != "" {
		t.Errorf("authorisations (-local +remote):\n%s", diff)
	}
	if diff := cmp.Diff(want.Violations, got.Violations); diff != "" {
		t.Errorf("violations (-local +remote):\n%s", diff)
	}
	if diff := cmp.Diff(want.Counters, got.Counters); diff != "" {
		t.Errorf("counters (-local +remote):\n%s", diff)
	}
	if len(got.Violations) != 1 || got.Violations[0].Rule != emulator.RuleStaleAccessToken {
		t.Errorf("violations %+v, want one stale_access_token", got.Violations)
	}
}

func TestRemote_SetFaults(t *testing.T) {
	ctx := context.Background()
	srv, rm := startRemote(t)
	f := emulator.Faults{
		emulator.EndpointToken: {Script: []string{emulator.Fault503, emulator.FaultNone}, RetryAfter: emulator.Duration(2 * time.Second)},
		emulator.EndpointAPI:   {Error500: 0.1, Latency: &emulator.Latency{P50: emulator.Duration(time.Millisecond), P99: emulator.Duration(2 * time.Millisecond)}},
	}
	if err := rm.SetFaults(ctx, f); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, srv.Faults()); diff != "" {
		t.Errorf("faults (-set +server):\n%s", diff)
	}
	if err := rm.SetFaults(ctx, emulator.Faults{"nowhere": {}}); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("invalid faults: err %v, want one naming the endpoint", err)
	}
	if diff := cmp.Diff(f, srv.Faults()); diff != "" {
		t.Errorf("a refused SetFaults changed the faults (-want +got):\n%s", diff)
	}
	if err := rm.SetFaults(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := srv.Faults(); len(got) != 0 {
		t.Errorf("faults after SetFaults(nil): %v, want none", got)
	}
}

func TestRemote_Revoke(t *testing.T) {
	ctx := context.Background()
	srv, rm := startRemote(t)
	tk := connect(t, srv)
	id := lastAuthorisation(t, srv).ID
	got, err := rm.Revoke(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.State != emulator.AuthorisationRevoked || got.RevokedReason != emulator.RevokedByUser {
		t.Errorf("Revoke = %+v", got)
	}
	if status, body := refresh(t, srv, tk.Refresh); body["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %v, want invalid_grant", status, body)
	}
	if _, err := rm.Revoke(ctx, "auth_missing"); err == nil || !strings.Contains(err.Error(), "auth_missing") {
		t.Errorf("Revoke(unknown) = %v, want an error naming auth_missing", err)
	}
}

func TestRemote_AddClient(t *testing.T) {
	ctx := context.Background()
	srv, rm := startRemote(t)
	c := emulator.Client{ID: "remote-added", Secret: "pw", RedirectURIs: []string{"http://127.0.0.1:7/cb"}, Name: "Remote App"}
	if err := rm.AddClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	connectAs(t, srv, c, nil)
	if got := lastAuthorisation(t, srv).ClientID; got != c.ID {
		t.Errorf("authorisation of client %q, want %q", got, c.ID)
	}
	bad := emulator.Client{ID: "bad", Secret: "pw", RedirectURIs: []string{"relative/cb"}}
	if err := rm.AddClient(ctx, bad); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("AddClient(relative redirect) = %v, want an HTTP 400 error", err)
	}
}

func TestRemote_Reset(t *testing.T) {
	ctx := context.Background()
	srv, rm := startRemote(t)
	connect(t, srv)
	if _, err := rm.Advance(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := rm.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := rm.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Authorisations) != 0 {
		t.Errorf("authorisations after Reset: %+v", rep.Authorisations)
	}
	if cl, _ := rm.Clock(ctx); cl.Offset != 0 {
		t.Errorf("clock offset after Reset: %v", time.Duration(cl.Offset))
	}
}

func TestRemote_URL(t *testing.T) {
	srv := startServer(t, emulator.Config{})
	for _, u := range []string{srv.URL, srv.URL + "/", srv.ControlURL, srv.ControlURL + "/"} {
		rm := &emulator.Remote{URL: u, HTTPClient: &http.Client{Timeout: 10 * time.Second}}
		if _, err := rm.Clock(context.Background()); err != nil {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}

func TestRemote_EmptyURL(t *testing.T) {
	var rm emulator.Remote
	if _, err := rm.Clock(context.Background()); err == nil {
		t.Error("Clock with an empty URL: no error")
	}
	if err := rm.Reset(context.Background()); err == nil {
		t.Error("Reset with an empty URL: no error")
	}
}
