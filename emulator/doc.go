// Package emulator is a faithful local stand-in for Pleo's OAuth 2.0 authorisation server
// and a slice of its External API, with fault injection, time control and a ledger of
// rule violations.
//
// It follows Pleo's documented rules (authorization code + PKCE S256, client_secret_basic,
// refresh-token rotation with no grace period, revocation of the whole authorisation when a
// rotated-out or expired refresh token is presented) and RFC 6749 where Pleo is silent. It
// is strict where Pleo is strict, and it records every rule a client breaks as a
// [Violation] in its [Report].
//
// Start one in a test much like an httptest.Server:
//
//	srv, err := emulator.NewServer(emulator.Config{AutoApprove: true})
//	if err != nil { ... }
//	defer srv.Close()
//	// srv.URL is the authorisation server, srv.APIURL the API.
//
// or run it as a process with `tokenkeeper emulator` and drive it over HTTP with [Remote].
//
// The package plays a third party: it never imports tokenkeeper's own packages, so it
// cannot share (and accidentally agree on) their types.
//
// Time is the emulator's own: wall-clock time plus an offset that only moves forward
// ([Emulator.Advance] or POST /_emulator/clock). Token, code and Retry-After expiries all use
// it, so tests travel in time instead of sleeping.
package emulator
