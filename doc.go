// Package tokenkeeper holds OAuth 2.0 tokens for Pleo and other providers
// that rotate refresh tokens (RFC 6749 section 6, RFC 9700 section 4.14):
// every refresh returns a new refresh token and retires the old one, so a
// token presented twice, or a response that is lost, can cost the user their
// connection.
//
// This root package is the vocabulary the rest of the module shares: error
// codes ([Code], [Error]), the [Secret] type, [Connection], [Record],
// [TokenSet], [Event] and [Provider], and the contracts that adapters
// implement: [Store], [Sealer] and [EventHandler]. It imports only the
// standard library.
//
// The whole product keeps these invariants:
//
//   - A refresh token is presented to the provider at most once.
//   - At most one refresh is in flight per authorisation, across goroutines,
//     processes and replicas.
//   - The new access and refresh tokens are persisted together, in one write,
//     before any caller sees either of them.
//   - A refresh that has been sent is never abandoned: it runs to completion
//     on a detached context, whatever happens to the caller that started it.
//   - invalid_grant stops all work on the authorisation and asks the user to
//     reconnect ([CodeReconnectRequired]); it is never retried.
//   - Tokens never appear in plaintext in storage, logs, errors, metrics or
//     panics: they travel as [Secret] and are sealed at rest.
package tokenkeeper
