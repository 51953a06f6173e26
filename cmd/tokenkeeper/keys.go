package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/keeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
	"github.com/tokenkeeper/tokenkeeper/webhook"
)

const keysUsage = `Usage: tokenkeeper keys <command> [flags]

Commands:
  generate --out FILE   write a new keyset (one AES-256-GCM key) to FILE, mode 0600
  rotate                add a key, make it the primary, re-seal every connection under it,
                        and with --remove-old retire the old keys

A keyset file holds the keys that seal tokens at rest, in clear: keep it as secret as a
password, and back it up. Losing it loses every token sealed with it.

Exit codes: 0 success, 1 runtime error, 2 usage error.
`

// runKeys runs `tokenkeeper keys`.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runGroup(ctx, "tokenkeeper keys", keysUsage, []subcommand{
		{"generate", runKeysGenerate},
		{"rotate", runKeysRotate},
	}, args, stdout, stderr)
}

const keysGenerateUsage = `Usage: tokenkeeper keys generate --out FILE [--force]

Writes a new keyset with one AES-256-GCM key to FILE, with mode 0600, atomically. It
refuses to replace an existing file unless --force is given: replacing a keyset in use
makes every token sealed with it unreadable (use "keys rotate" to change keys).

Flags, each with the environment variable that sets it when the flag is absent:
`

func runKeysGenerate(_ context.Context, args []string, stdout, _ io.Writer) error {
	f := newFlagSet("tokenkeeper keys generate", envPrefix)
	var out string
	var force bool
	f.stringVar(&out, "out", "", "write the keyset to `FILE` (required)")
	f.boolVar(&force, "force", false, "replace FILE if it exists")
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, keysGenerateUsage)
			f.printFlags(stdout)
		}
		return err
	}
	if out == "" {
		return &usageError{cmd: f.fs.Name(), err: errors.New("--out is required")}
	}
	data, err := seal.Generate()
	if err != nil {
		return err
	}
	if !force {
		// Claim the name first, so that two runs cannot both think it free; seal.Write
		// then renames the keyset over the empty placeholder.
		pf, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; it may hold keys in use: pass --force to replace it, or use \"tokenkeeper keys rotate\"", out)
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", out, err)
		}
		pf.Close()
	}
	if err := seal.Write(out, data); err != nil {
		if !force {
			_ = os.Remove(out)
		}
		return err
	}
	ks, err := seal.Parse(data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote a new keyset to %s (key %s); keep it secret, and back it up\n", out, ks.PrimaryKeyID())
	return err
}

const keysRotateUsage = `Usage: tokenkeeper keys rotate --key-file FILE --store STORE [--remove-old]

Rotates the key that seals tokens at rest, in steps, writing the keyset file after each:

  0. check, changing nothing, that FILE is the keyset of STORE: --store must be given
     (flag, $TOKENKEEPER_STORE or the --config file; the default is never assumed), the
     store must exist, and FILE must hold every key the store uses; with --remove-old,
     the store must also hold at least one token sealed under a key of FILE, since an
     empty store is the usual sign of the wrong --store;
  1. add a new key (not yet the primary) and write the file;
  2. make it the primary and write the file;
  3. re-seal every connection under it (a progress bar on stderr);
  4. with --remove-old, once every connection is re-sealed, delete the old keys and
     write the file.

It is safe to interrupt at any step: every keyset it writes still opens everything in
the store, and a connection is re-sealed in one write. To resume, run the same command
again: a run that finds a key added but not made primary (step 1 done, step 2 not)
promotes that key, and otherwise it adds another, re-seals everything under it, and
leaves the older keys to --remove-old. A re-seal failure leaves the old keys in place.

A running serve reloads its key file within 5 seconds of a change (a file that does not
load, or drops the primary in use, is refused and logged, and the old keyset stays).
So that no service meets a token sealed under a key it has not loaded yet, rotate waits
--settle (15s) after writing the new primary before re-sealing; every serve process must
read the same key file (or a copy updated at the same moment). With every service
stopped, --settle 0 skips the wait. --remove-old refuses
while any token is still sealed under an old key, and ends connect flows begun before
it (their users start again). Audited as keys.rotate.

Flags, each with the environment variable that sets it when the flag is absent:
`

func runKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := newSettings("tokenkeeper keys rotate", groupStore|groupKeys)
	var removeOld bool
	var settle time.Duration
	s.f.boolVar(&removeOld, "remove-old", false,
		"after every connection is re-sealed, delete the keys other than the new primary")
	s.f.durationVar(&settle, "settle", 3*keyPollInterval,
		"wait this `DURATION` after writing the new primary, so that running services load it, before re-sealing under it; 0 with every service stopped")
	s.f.cliOnly("remove-old", "settle")
	if _, err := parseSettings(s, keysRotateUsage, stdout, args); err != nil {
		return err
	}
	if err := s.requireKeyFile(); err != nil {
		return err
	}
	// The default store is a relative path: from another directory it names a store
	// that does not exist, or an unrelated one. Rotating a keyset against the wrong
	// store re-seals nothing and, with --remove-old, drops keys that seal every token of
	// the right one.
	if settingOrigin(s.f, "store") == "default" {
		return &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf(
			"--store is required (or $%s, or store in the --config file): rotate re-seals the tokens of one store, so it never assumes the default %s",
			s.f.envName("store"), s.f.fs.Lookup("store").DefValue)}
	}
	path := s.keyFile
	// Load checks the file's mode and parses it; the edits below need its bytes.
	if _, err := seal.Load(path); err != nil {
		return fmt.Errorf("%s: %w", s.f.source("key-file"), err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", s.f.source("key-file"), err)
	}
	st, err := openStore(ctx, s, existingStore)
	if err != nil {
		return err
	}
	defer st.Close()
	held, _ := seal.Parse(data)
	total, err := checkKeysetOfStore(ctx, s, st, held, removeOld, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rotating %s, the keyset of store %s (%d connections)\n", path, storeLabel(s), total)

	data, primary, err := rotateKeyset(path, data, stdout)
	if err != nil {
		return err
	}
	ks, err := seal.Parse(data)
	if err != nil {
		return err
	}
	if settle > 0 {
		fmt.Fprintf(stderr, "waiting %s for running services to load key %s (they check the key file every %s; --settle)\n",
			shortDuration(settle), primary, shortDuration(keyPollInterval))
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted before re-sealing (key %s is the primary; run the same command again to finish): %w", primary, ctx.Err())
		case <-time.After(settle):
		}
	}
	resealed, err := resealAll(ctx, st, ks, stderr)
	if err != nil {
		return fmt.Errorf("re-seal under key %s: %w (the keyset file holds every key still in use: run the same command again to finish)", primary, err)
	}
	fmt.Fprintf(stdout, "re-sealed %d connections under key %s\n", resealed, primary)
	hooks, err := (&webhook.Endpoints{Store: st, Log: st, Sealer: seal.NewKeyring(ks)}).Reseal(ctx)
	if err != nil {
		return fmt.Errorf("re-seal the webhook secrets under key %s: %w (the keyset file holds every key still in use: run the same command again to finish)", primary, err)
	}
	if hooks > 0 {
		fmt.Fprintf(stdout, "re-sealed %d webhook endpoint secrets under key %s\n", hooks, primary)
	}

	var removed []string
	if removeOld {
		if data, removed, err = removeOldKeys(ctx, st, path, data, primary); err != nil {
			return err
		}
		if len(removed) > 0 {
			fmt.Fprintf(stdout, "removed old keys %s from %s\n", strings.Join(removed, ", "), path)
		}
	}
	detail := fmt.Sprintf("primary=%s resealed=%d", primary, resealed)
	if len(removed) > 0 {
		detail += " removed=" + strings.Join(removed, ",")
	}
	if err := audit(ctx, st, "keys.rotate", "", detail); err != nil {
		return err
	}
	ids, _ := seal.Parse(data)
	_, err = fmt.Fprintf(stdout, "rotation done: %s holds keys %s, primary %s\n", path, strings.Join(ids.KeyIDs(), ", "), primary)
	return err
}

// checkKeysetOfStore checks, before the key file changes, that held is the keyset of the
// store st, and returns how many connections st holds. Every key that seals a token in
// st must be in held: otherwise rotating would leave tokens that no key opens.
//
// With removeOld it also wants evidence: at least one token in st sealed under a key of
// held. Without one (an empty store, or one whose connections hold no token), nothing
// ties the file to this store, and the most likely cause is a wrong --store, such as
// a fresh store made by mistake; removing the old keys would then lose every token they
// seal in the right store. The refusal is a usage error, and nothing is changed. Without
// removeOld, rotating only adds a key, so it goes ahead with a warning on stderr.
func checkKeysetOfStore(ctx context.Context, s *settings, st backend, held *seal.Keyset, removeOld bool, stderr io.Writer) (int, error) {
	use, err := keysInUse(ctx, st)
	if err != nil {
		return 0, err
	}
	for _, id := range slices.Sorted(maps.Keys(use)) {
		if !slices.Contains(held.KeyIDs(), id) {
			return 0, fmt.Errorf("%s does not hold key %s, which seals connection %s: is it the keyset of this store? Nothing was changed",
				s.f.source("key-file"), id, use[id])
		}
	}
	counts, err := st.CountConnections(ctx)
	if err != nil {
		return 0, fmt.Errorf("count connections: %w", err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	// Every key in use is held (checked above), so the store uses a key of the file
	// exactly when it uses any key.
	if len(use) > 0 {
		return total, nil
	}
	what := "holds no connection"
	switch {
	case total == 1:
		what = "holds 1 connection but no sealed token"
	case total > 1:
		what = fmt.Sprintf("holds %d connections but no sealed token", total)
	}
	if !removeOld {
		fmt.Fprintf(stderr, "note: store %s %s, so nothing shows that %s is its keyset; rotating anyway, as no key is removed without --remove-old\n",
			storeLabel(s), what, s.keyFile)
		return total, nil
	}
	return 0, &usageError{cmd: s.f.fs.Name(), err: fmt.Errorf(
		"refusing --remove-old: store %s (%s) %s, so nothing shows that %s (%s) is its keyset, and removing the old keys from a keyset "+
			"that seals tokens elsewhere loses them all. A store with no token is the usual sign of the wrong --store: check it. "+
			"If this is the right store, run without --remove-old (the old keys stay in the file). Nothing was changed",
		storeLabel(s), s.f.source("store"), what, s.keyFile, s.f.source("key-file"))}
}

// rotateKeyset runs steps 1 and 2: it adds a key and writes the file, then promotes it
// and writes the file again. A keyset whose newest key is not its primary is a rotation
// stopped between the two (seal.AddKey appends keys): the step is resumed by promoting
// that key. It returns the keyset as written and the new primary key's id.
func rotateKeyset(path string, data []byte, stdout io.Writer) ([]byte, string, error) {
	ks, err := seal.Parse(data)
	if err != nil {
		return nil, "", err
	}
	ids := ks.KeyIDs()
	newest := ids[len(ids)-1]
	if newest != ks.PrimaryKeyID() {
		fmt.Fprintf(stdout, "key %s was added but not made primary (an earlier rotation stopped there): resuming with it\n", newest)
	} else {
		if data, newest, err = seal.AddKey(data); err != nil {
			return nil, "", err
		}
		if err := seal.Write(path, data); err != nil {
			return nil, "", fmt.Errorf("write the keyset with the new key (nothing changed): %w", err)
		}
		fmt.Fprintf(stdout, "added key %s to %s\n", newest, path)
	}
	if data, err = seal.Promote(data, newest); err != nil {
		return nil, "", err
	}
	if err := seal.Write(path, data); err != nil {
		return nil, "", fmt.Errorf("write the keyset with key %s primary (the file holds it, not yet primary; run again to resume): %w", newest, err)
	}
	fmt.Fprintf(stdout, "made key %s the primary\n", newest)
	return data, newest, nil
}

// resealAll re-seals every connection under ks's primary key with the keeper's rules
// (under each connection's lease, with a compare-and-swap), reporting progress on
// stderr. It returns how many connections it re-sealed.
func resealAll(ctx context.Context, st backend, ks *seal.Keyset, stderr io.Writer) (int, error) {
	counts, err := st.CountConnections(ctx)
	if err != nil {
		return 0, fmt.Errorf("count connections: %w", err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	// Re-sealing opens and seals but never calls the provider.
	k, err := offlineKeeper(st, seal.NewKeyring(ks))
	if err != nil {
		return 0, err
	}
	defer k.Close()
	bar := newProgress(stderr, "resealing", total)
	res, err := k.Reseal(ctx, func(p keeper.ResealProgress) { bar.update(p.Seen) })
	bar.finish()
	return res.Resealed, err
}

// keysInUse scans the store and returns the id of every key that seals a token, each
// with the first connection (in id order) it seals.
func keysInUse(ctx context.Context, st tokenkeeper.Store) (map[string]tokenkeeper.ConnectionID, error) {
	use := map[string]tokenkeeper.ConnectionID{}
	for f := (tokenkeeper.ConnectionFilter{Limit: 1000}); ; {
		page, err := st.ListConnections(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list the keys in use: %w", err)
		}
		for _, rec := range page {
			for _, sealed := range []tokenkeeper.Sealed{rec.Tokens.AccessToken, rec.Tokens.RefreshToken} {
				if _, seen := use[sealed.KeyID]; !sealed.IsZero() && !seen {
					use[sealed.KeyID] = rec.ID
				}
			}
		}
		if len(page) < f.Limit {
			return use, nil
		}
		f.After = page[len(page)-1].ID
	}
}

// removeOldKeys runs step 4: once no connection is sealed under another key than
// primary, it deletes the other keys and writes the file. It checks the whole store
// first, since a process still running the old keyset may have sealed under an old key
// after the re-seal passed it. It returns the keyset as written and the ids removed.
func removeOldKeys(ctx context.Context, st backend, path string, data []byte, primary string) ([]byte, []string, error) {
	use, err := keysInUse(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	delete(use, primary)
	if len(use) > 0 {
		id := slices.Sorted(maps.Keys(use))[0]
		return nil, nil, fmt.Errorf("kept the old keys: connection %s is sealed under old key %s, so a process still runs the old keyset; restart it, then run the same command again",
			use[id], id)
	}
	eps, err := st.ListWebhookEndpoints(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list the keys in use: %w", err)
	}
	for _, ep := range eps {
		if ep.Secret.KeyID != primary {
			return nil, nil, fmt.Errorf("kept the old keys: the secret of webhook endpoint %s is sealed under old key %s, so a process still runs the old keyset; restart it, then run the same command again",
				ep.ID, ep.Secret.KeyID)
		}
	}
	ks, err := seal.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	var removed []string
	for _, id := range ks.KeyIDs() {
		if id == primary {
			continue
		}
		if data, err = seal.Remove(data, id); err != nil {
			return nil, nil, err
		}
		removed = append(removed, id)
	}
	if len(removed) == 0 {
		return data, nil, nil
	}
	if err := seal.Write(path, data); err != nil {
		return nil, nil, fmt.Errorf("write the keyset without the old keys (the file still holds them; run again): %w", err)
	}
	slices.Sort(removed)
	return data, removed, nil
}
