package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/httpapi"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

const webhooksUsage = `Usage: tokenkeeper webhooks <command> [flags]

Commands:
  create --url URL      add a webhook endpoint and print its signing secret, once
  list                  list the endpoints (never a secret)
  delete ID             delete an endpoint: nothing more is sent to it
  test ID               send a signed webhook.test event to the endpoint
  deliveries ID         print the endpoint's delivery log, newest first
  secret                print a new whsec_ secret, for --webhook-secret-file

Endpoints get connection.connected, .degraded, .recovered, .reconnect_required and
.disconnected, signed the Standard Webhooks way. Each command works on the store (--store,
with --key-file for create, which seals the secret) or with --server URL through a running
service's HTTP API (with an admin key from $TOKENKEEPER_API_KEY or --api-key-file); a test
event made on the store goes out from a running service.

Exit codes: 0 success, 1 runtime error, 2 usage error, 4 no such endpoint.
`

// runWebhooks runs `tokenkeeper webhooks`.
func runWebhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "tokenkeeper webhooks", webhooksUsage, []subcommand{
		{"create", runWebhooksCreate},
		{"list", runWebhooksList},
		{"delete", runWebhooksDelete},
		{"test", runWebhooksTest},
		{"deliveries", runWebhooksDeliveries},
		{"secret", runWebhooksSecret},
	}, args, stdout, stderr)
}

// localEndpoints opens the store and returns the endpoints on it, with a function that
// closes the store. keys is the sealer (noKeys{} when nothing is sealed or opened).
func localEndpoints(ctx context.Context, s *settings, keys tokenkeeper.Sealer) (*webhook.Endpoints, backend, func(), error) {
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return nil, nil, nil, err
	}
	return &webhook.Endpoints{Store: st, Log: st, Sealer: keys}, st, func() { st.Close() }, nil
}

const webhooksCreateUsage = `Usage: tokenkeeper webhooks create --url URL [--json]

Adds an endpoint and prints its secret once: on stdout alone (SECRET=$(...) captures it);
with --json, as {"id", "url", "secret"}. https is recommended; http is accepted (loopback,
internal networks) with a warning.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runWebhooksCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper webhooks create", groupStore|groupKeys)
	r := addRemoteFlags(s)
	var rawURL string
	var asJSON bool
	s.f.stringVar(&rawURL, "url", "", "the endpoint's `URL` (required)")
	s.f.boolVar(&asJSON, "json", false, "print the endpoint and its secret as JSON")
	if _, err := parseSettings(s, webhooksCreateUsage, stdout, args); err != nil {
		return err
	}
	if rawURL == "" {
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--url is required")}
	}
	insecure, err := tokenkeeper.CheckWebhookURL(rawURL)
	if err != nil {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf("--url: %s", tokenkeeper.ErrorMessage(err))}
	}
	var created *httpapi.CreatedWebhookEndpoint
	// after is a failure to report once the secret is printed: an endpoint that was
	// made must not lose its secret because its audit entry failed.
	var after error
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if created, err = c.CreateWebhookEndpoint(ctx, rawURL); err != nil {
			return fmt.Errorf("create webhook endpoint: %w", err)
		}
	} else {
		keys, err := loadKeys(s)
		if err != nil {
			return err
		}
		eps, st, done, err := localEndpoints(ctx, s, keys)
		if err != nil {
			return err
		}
		defer done()
		ep, secret, err := eps.Create(ctx, rawURL)
		if err != nil {
			return fmt.Errorf("create webhook endpoint: %w", err)
		}
		created = &httpapi.CreatedWebhookEndpoint{ID: ep.ID, URL: ep.URL, Secret: secret}
		after = audit(ctx, st, "webhook_endpoint.create", "", "id="+string(ep.ID))
	}
	if asJSON {
		return errors.Join(writeJSON(stdout, created), after)
	}
	if _, err := fmt.Fprintln(stdout, created.Secret.Reveal()); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Created webhook endpoint %s for %s. Store its signing secret above now: it is not shown again.\n", created.ID, created.URL)
	if insecure {
		fmt.Fprintln(stderr, "warning: the URL is plain http; use https unless the receiver is on loopback or an internal network")
	}
	return after
}

const webhooksListUsage = `Usage: tokenkeeper webhooks list [--json]

Lists the endpoints not deleted, oldest first: never a secret.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runWebhooksList(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper webhooks list", groupStore)
	r := addRemoteFlags(s)
	var asJSON bool
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	if _, err := parseSettings(s, webhooksListUsage, stdout, args); err != nil {
		return err
	}
	list := []*httpapi.WebhookEndpoint{}
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if list, err = c.ListWebhookEndpoints(ctx); err != nil {
			return fmt.Errorf("list webhook endpoints: %w", err)
		}
	} else {
		eps, _, done, err := localEndpoints(ctx, s, noKeys{})
		if err != nil {
			return err
		}
		defer done()
		got, err := eps.List(ctx)
		if err != nil {
			return fmt.Errorf("list webhook endpoints: %w", err)
		}
		for _, ep := range got {
			list = append(list, httpapi.FromWebhookEndpoint(ep))
		}
	}
	if asJSON {
		return writeJSON(stdout, httpapi.WebhookEndpointList{WebhookEndpoints: list})
	}
	t := newTable(stdout, "ID", "URL", "CREATED")
	for _, ep := range list {
		t.row(string(ep.ID), ep.URL, stamp(ep.CreatedAt))
	}
	return t.flush()
}

const webhooksDeleteUsage = `Usage: tokenkeeper webhooks delete ID

Deletes the endpoint ID: nothing more is sent to it, and its pending deliveries fail. Its
delivery log is kept. Exits 4 if there is no such endpoint (or it was deleted).

Flags, each with the environment variable that sets it when the flag is absent:
`

func runWebhooksDelete(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper webhooks delete", groupStore)
	r := addRemoteFlags(s)
	pos, err := parseSettings(s, webhooksDeleteUsage, stdout, args, "ID")
	if err != nil {
		return err
	}
	id := tokenkeeper.WebhookEndpointID(pos[0])
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		if _, err := c.DeleteWebhookEndpoint(ctx, id); err != nil {
			return notFound(fmt.Errorf("delete webhook endpoint %s: %w", id, err))
		}
	} else {
		eps, st, done, err := localEndpoints(ctx, s, noKeys{})
		if err != nil {
			return err
		}
		defer done()
		if err := eps.Delete(ctx, id); err != nil {
			return notFound(fmt.Errorf("delete webhook endpoint %s: %w", id, err))
		}
		if err := audit(ctx, st, "webhook_endpoint.delete", "", "id="+string(id)); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stdout, "webhook endpoint %s deleted\n", id)
	return err
}

const webhooksTestUsage = `Usage: tokenkeeper webhooks test ID

Enqueues a signed webhook.test event to the endpoint ID alone; a running service delivers
it (see "webhooks deliveries ID"). Exits 4 if there is no such endpoint.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runWebhooksTest(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper webhooks test", groupStore)
	r := addRemoteFlags(s)
	pos, err := parseSettings(s, webhooksTestUsage, stdout, args, "ID")
	if err != nil {
		return err
	}
	id := tokenkeeper.WebhookEndpointID(pos[0])
	var eventID tokenkeeper.EventID
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		test, err := c.TestWebhookEndpoint(ctx, id)
		if err != nil {
			return notFound(fmt.Errorf("test webhook endpoint %s: %w", id, err))
		}
		eventID = test.EventID
	} else {
		eps, st, done, err := localEndpoints(ctx, s, noKeys{})
		if err != nil {
			return err
		}
		defer done()
		ev, err := eps.SendTest(ctx, id)
		if err != nil {
			return notFound(fmt.Errorf("test webhook endpoint %s: %w", id, err))
		}
		eventID = ev.ID
		if err := audit(ctx, st, "webhook_endpoint.test", "", fmt.Sprintf("id=%s event=%s", id, ev.ID)); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stdout, "test event %s enqueued for webhook endpoint %s\n", eventID, id)
	return err
}

const webhooksDeliveriesUsage = `Usage: tokenkeeper webhooks deliveries ID [--state STATE] [--limit N] [--json]

Prints the delivery log of the endpoint ID, newest first: each event sent to it, its
state (pending, delivered, failed), attempts, last status and error.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runWebhooksDeliveries(ctx context.Context, args []string, stdout, _ io.Writer) error {
	s := newSettings("tokenkeeper webhooks deliveries", groupStore)
	r := addRemoteFlags(s)
	var state string
	var limit uint64
	var asJSON bool
	s.f.stringVar(&state, "state", "", "only deliveries in `STATE`: pending, delivered or failed")
	s.f.uint64Var(&limit, "limit", 50, "print at most `N` deliveries (1 to 1000)")
	s.f.boolVar(&asJSON, "json", false, "print JSON instead of a table")
	pos, err := parseSettings(s, webhooksDeliveriesUsage, stdout, args, "ID")
	if err != nil {
		return err
	}
	if limit < 1 || limit > 1000 {
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--limit must be from 1 to 1000")}
	}
	if state != "" && !tokenkeeper.DeliveryState(state).Valid() {
		return &usageError{cmd: s.f.fs.Name(), err: errors.New("--state must be pending, delivered or failed")}
	}
	id := tokenkeeper.WebhookEndpointID(pos[0])
	list := []*httpapi.Delivery{}
	if c, err := r.client(s); err != nil {
		return err
	} else if c != nil {
		got, err := c.ListDeliveries(ctx, id, httpapi.ListDeliveriesOptions{State: tokenkeeper.DeliveryState(state), Limit: int(limit)})
		if err != nil {
			return notFound(fmt.Errorf("list deliveries of %s: %w", id, err))
		}
		list = got.Deliveries
	} else {
		eps, _, done, err := localEndpoints(ctx, s, noKeys{})
		if err != nil {
			return err
		}
		defer done()
		if _, err := eps.Get(ctx, id); err != nil {
			return notFound(fmt.Errorf("list deliveries of %s: %w", id, err))
		}
		got, err := eps.Deliveries(ctx, tokenkeeper.DeliveryFilter{EndpointID: id, State: tokenkeeper.DeliveryState(state), Limit: int(limit)})
		if err != nil {
			return fmt.Errorf("list deliveries of %s: %w", id, err)
		}
		for _, d := range got {
			list = append(list, httpapi.FromDelivery(d))
		}
	}
	if asJSON {
		return writeJSON(stdout, httpapi.DeliveryList{Deliveries: list})
	}
	t := newTable(stdout, "ID", "EVENT", "TYPE", "CONNECTION", "STATE", "ATTEMPTS", "LAST STATUS", "LAST ERROR", "NEXT ATTEMPT")
	for _, d := range list {
		t.row(strconv.FormatInt(int64(d.ID), 10), string(d.EventID), d.Type, string(d.ConnectionID), string(d.State),
			strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatus), d.LastError, stamp(deref(d.NextAttemptAt)))
	}
	return t.flush()
}

const webhooksSecretUsage = `Usage: tokenkeeper webhooks secret

Prints a new signing secret in Standard Webhooks' form (whsec_ and the base64 of 32
random bytes), for $TOKENKEEPER_WEBHOOK_SECRET or --webhook-secret-file, which sign the
deliveries to the --webhook-url endpoints of serve. Give the same secret to the receivers.
`

func runWebhooksSecret(_ context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlagSet("tokenkeeper webhooks secret", envPrefix)
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, webhooksSecretUsage)
		}
		return err
	}
	_, err := fmt.Fprintln(stdout, tokenkeeper.NewWebhookSecret().Reveal())
	return err
}
