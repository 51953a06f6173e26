package httpapi_test

import (
	"context"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/sqlite"
)

// faultStore is the SQLite store with faults: while a method has an error
// set, it returns that error instead of touching the database.
type faultStore struct {
	*sqlite.Store
	mu   sync.Mutex
	fail map[string]error
}

// inject makes method fail with err until the returned func is called.
func (f *faultStore) inject(method string, err error) (restore func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]error{}
	}
	f.fail[method] = err
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.fail, method)
	}
}

func (f *faultStore) check(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[method]
}

func (f *faultStore) GetAPIKey(ctx context.Context, id tokenkeeper.APIKeyID) (*tokenkeeper.APIKey, error) {
	if err := f.check("GetAPIKey"); err != nil {
		return nil, err
	}
	return f.Store.GetAPIKey(ctx, id)
}

func (f *faultStore) ListAPIKeys(ctx context.Context) ([]*tokenkeeper.APIKey, error) {
	if err := f.check("ListAPIKeys"); err != nil {
		return nil, err
	}
	return f.Store.ListAPIKeys(ctx)
}

func (f *faultStore) RevokeAPIKey(ctx context.Context, id tokenkeeper.APIKeyID, at time.Time) error {
	if err := f.check("RevokeAPIKey"); err != nil {
		return err
	}
	return f.Store.RevokeAPIKey(ctx, id, at)
}

func (f *faultStore) AppendAudit(ctx context.Context, e *tokenkeeper.AuditEntry) error {
	if err := f.check("AppendAudit"); err != nil {
		return err
	}
	return f.Store.AppendAudit(ctx, e)
}

func (f *faultStore) ListConnections(ctx context.Context, filter tokenkeeper.ConnectionFilter) ([]*tokenkeeper.Record, error) {
	if err := f.check("ListConnections"); err != nil {
		return nil, err
	}
	return f.Store.ListConnections(ctx, filter)
}

func (f *faultStore) TakeSession(ctx context.Context, hash []byte) (*tokenkeeper.Session, error) {
	if err := f.check("TakeSession"); err != nil {
		return nil, err
	}
	return f.Store.TakeSession(ctx, hash)
}

func (f *faultStore) CreateSession(ctx context.Context, s *tokenkeeper.Session) error {
	if err := f.check("CreateSession"); err != nil {
		return err
	}
	return f.Store.CreateSession(ctx, s)
}

// Errors a store may fail with.
var (
	errUnavailable = tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "database is locked")
	errInternal    = tokenkeeper.Errorf(tokenkeeper.CodeInternal, "disk I/O error: sector 7")
)

func (f *faultStore) ListEvents(ctx context.Context, filter tokenkeeper.EventFilter) ([]*tokenkeeper.StoredEvent, error) {
	if err := f.check("ListEvents"); err != nil {
		return nil, err
	}
	return f.Store.ListEvents(ctx, filter)
}

func (f *faultStore) AppendEvent(ctx context.Context, e *tokenkeeper.StoredEvent, fanout tokenkeeper.Fanout) error {
	if err := f.check("AppendEvent"); err != nil {
		return err
	}
	return f.Store.AppendEvent(ctx, e, fanout)
}

func (f *faultStore) CreateWebhookEndpoint(ctx context.Context, ep *tokenkeeper.WebhookEndpoint) error {
	if err := f.check("CreateWebhookEndpoint"); err != nil {
		return err
	}
	return f.Store.CreateWebhookEndpoint(ctx, ep)
}

func (f *faultStore) ListWebhookEndpoints(ctx context.Context) ([]*tokenkeeper.WebhookEndpoint, error) {
	if err := f.check("ListWebhookEndpoints"); err != nil {
		return nil, err
	}
	return f.Store.ListWebhookEndpoints(ctx)
}

func (f *faultStore) GetWebhookEndpoint(ctx context.Context, id tokenkeeper.WebhookEndpointID) (*tokenkeeper.WebhookEndpoint, error) {
	if err := f.check("GetWebhookEndpoint"); err != nil {
		return nil, err
	}
	return f.Store.GetWebhookEndpoint(ctx, id)
}

func (f *faultStore) ListDeliveries(ctx context.Context, filter tokenkeeper.DeliveryFilter) ([]*tokenkeeper.Delivery, error) {
	if err := f.check("ListDeliveries"); err != nil {
		return nil, err
	}
	return f.Store.ListDeliveries(ctx, filter)
}
