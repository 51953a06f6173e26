package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Remote drives an emulator's control plane over HTTP, for test suites that run the
// emulator as a separate process (`tokenkeeper emulator`).
//
// The zero value is not usable: set URL. A Remote is safe for concurrent use.
type Remote struct {
	// URL is the emulator's base URL, as printed at start (for example
	// http://127.0.0.1:9090). A trailing /_emulator is accepted too.
	URL string
	// HTTPClient is used for every call. Nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Advance moves the emulator's clock forward by d.
func (rm *Remote) Advance(ctx context.Context, d time.Duration) (ClockState, error) {
	var out ClockState
	err := rm.do(ctx, http.MethodPost, "/clock", ClockAdvance{Advance: Duration(d)}, &out)
	return out, err
}

// Clock returns the emulator's time.
func (rm *Remote) Clock(ctx context.Context) (ClockState, error) {
	var out ClockState
	err := rm.do(ctx, http.MethodGet, "/clock", nil, &out)
	return out, err
}

// Report returns the ledger.
func (rm *Remote) Report(ctx context.Context) (Report, error) {
	var out Report
	err := rm.do(ctx, http.MethodGet, "/report", nil, &out)
	return out, err
}

// SetFaults replaces every injected fault; nil clears them.
func (rm *Remote) SetFaults(ctx context.Context, f Faults) error {
	if f == nil {
		return rm.do(ctx, http.MethodDelete, "/faults", nil, nil)
	}
	return rm.do(ctx, http.MethodPut, "/faults", f, nil)
}

// Revoke revokes an authorisation, as when the user uninstalls the app in Pleo.
func (rm *Remote) Revoke(ctx context.Context, id string) (AuthorisationReport, error) {
	var out AuthorisationReport
	err := rm.do(ctx, http.MethodPost, "/authorisations/"+url.PathEscape(id)+"/revoke", nil, &out)
	return out, err
}

// AddClient registers an OAuth client.
func (rm *Remote) AddClient(ctx context.Context, c Client) error {
	return rm.do(ctx, http.MethodPost, "/clients", c, nil)
}

// Reset returns the emulator to its state at start.
func (rm *Remote) Reset(ctx context.Context) error {
	return rm.do(ctx, http.MethodPost, "/reset", nil, nil)
}

func (rm *Remote) do(ctx context.Context, method, path string, in, out any) error {
	if rm.URL == "" {
		return fmt.Errorf("emulator: Remote.URL is empty")
	}
	base := strings.TrimSuffix(strings.TrimSuffix(rm.URL, "/"), "/_emulator")
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("emulator: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/_emulator"+path, body)
	if err != nil {
		return fmt.Errorf("emulator: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := rm.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("emulator: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("emulator: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("emulator: %s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("emulator: %s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("emulator: %s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}
