// Package webhook records connection events durably and delivers them as
// signed webhooks from an outbox in the store.
//
//   - [Recorder] is the keeper's [tokenkeeper.EventHandler]: it appends each
//     event to the [tokenkeeper.EventLog], and for the webhook types
//     enqueues a delivery to every endpoint in the same transaction.
//   - [Reconciler] repairs the log after a crash: it compares each
//     connection's state with the last state event recorded for it and
//     appends the transition that is missing. With the Recorder it makes
//     sure no state change goes unreported (see docs/design.md, "Events and
//     webhooks").
//   - [Dispatcher] claims due deliveries from the [tokenkeeper.WebhookStore],
//     POSTs them signed the Standard Webhooks way ([Sign]), and retries
//     with backoff until delivered or given up (failed, and visible in the
//     delivery log). Several dispatchers may share one store.
//   - [Endpoints] creates, lists and deletes endpoints and sends test
//     events: what the HTTP API and the CLI drive.
//
// The wire format is [Payload]'s; the signature is [Sign]'s.
package webhook
