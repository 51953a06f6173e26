package emulator_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/emulator"
)

// TestListen_WildcardAddress checks that a server bound to every interface advertises a
// URL a local client can use, not http://0.0.0.0:PORT or http://[::]:PORT.
func TestListen_WildcardAddress(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		srv, err := emulator.Listen(emulator.Config{}, addr, "")
		if err != nil {
			t.Fatalf("Listen(%q): %v", addr, err)
		}
		if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
			t.Errorf("Listen(%q).URL = %s, want http://127.0.0.1:PORT", addr, srv.URL)
		}
		resp, err := http.Get(srv.ControlURL + "/health")
		if err != nil {
			t.Errorf("GET %s/health: %v", srv.ControlURL, err)
		} else {
			resp.Body.Close()
		}
		srv.Close()
	}
}
