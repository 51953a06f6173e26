package httpapi_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

// secretSet collects every secret a test saw, to look for them where they
// must never be.
type secretSet struct {
	mu     sync.Mutex
	values map[string]string // value -> kind
}

func (s *secretSet) add(kind, value string) {
	if len(value) < 8 {
		return // too short to search for without false alarms
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]string{}
	}
	s.values[value] = kind
}

func (s *secretSet) each(f func(kind, value string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, k := range s.values {
		f(k, v)
	}
}

// harvest adds the tokens every connection holds now, opened from the
// store, to the secrets.
func (e *env) harvest(t testing.TB) {
	t.Helper()
	recs, err := e.store.ListConnections(context.Background(), tokenkeeper.ConnectionFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		for field, sealed := range map[string]tokenkeeper.Sealed{
			tokenkeeper.FieldAccessToken: rec.Tokens.AccessToken, tokenkeeper.FieldRefreshToken: rec.Tokens.RefreshToken,
		} {
			if sealed.IsZero() {
				continue
			}
			plain, err := e.ring.Open(sealed, tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, string(rec.ID), field))
			if err != nil {
				t.Fatalf("open %s of %s: %v", field, rec.ID, err)
			}
			e.secrets.add(field, string(plain))
		}
	}
}

// checkLeaks fails the test if a log line holds any secret, or a response
// body holds one outside the one response made to carry it: tokens only in
// POST .../token's 200, API keys only in POST /v1/api-keys' 201, link
// tokens only in POST /v1/connect-sessions' 201, webhook secrets only in
// POST /v1/webhook-endpoints' 201.
func (e *env) checkLeaks() {
	e.harvest(e.t)
	logs := e.logs.String()
	bodies := e.client.Transport.(*contractTransport).seen()
	e.secrets.each(func(kind, value string) {
		if strings.Contains(logs, value) {
			e.t.Errorf("a log line holds a %s", kind)
		}
		for _, b := range bodies {
			if !strings.Contains(b.body, value) {
				continue
			}
			switch {
			case (kind == tokenkeeper.FieldAccessToken) && b.op == "getToken" && b.status == 200,
				kind == "api key" && b.op == "createAPIKey" && b.status == 201,
				kind == "webhook secret" && b.op == "createWebhookEndpoint" && b.status == 201,
				kind == "link" && b.op == "createConnectSession" && b.status == 201:
			default:
				e.t.Errorf("the %d response of %s holds a %s", b.status, b.op, kind)
			}
		}
	})
}
