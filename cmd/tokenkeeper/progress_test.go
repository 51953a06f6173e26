package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestProgress_Terminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	clock := time.Unix(0, 0)
	p := &progress{w: &buf, label: "resealing", total: 5000, tty: true, now: func() time.Time { return clock }}
	p.update(1200)
	p.update(1201) // within redrawEvery: not drawn
	clock = clock.Add(redrawEvery)
	p.update(2500)
	p.update(5000) // within redrawEvery again: finish draws it
	p.finish()
	want := "\rresealing 1200/5000 [======>                       ] 24%" +
		"\rresealing 2500/5000 [==============>               ] 50%" +
		"\rresealing 5000/5000 [==============================] 100%\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("terminal output (-want +got):\n%s", diff)
	}
}

func TestProgress_Plain(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progress{w: &buf, label: "resealing", total: 25, now: time.Now}
	for i := 1; i <= 25; i++ {
		p.update(i)
	}
	p.finish()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"resealing 3/25 (12%)", "resealing 5/25 (20%)", "resealing 8/25 (32%)", "resealing 10/25 (40%)",
		"resealing 13/25 (52%)", "resealing 15/25 (60%)", "resealing 18/25 (72%)", "resealing 20/25 (80%)",
		"resealing 23/25 (92%)", "resealing 25/25 (100%)",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("plain output: a line per tenth (-want +got):\n%s", diff)
	}

	// Nothing to do: nothing printed. More done than counted: the bar stays full.
	buf.Reset()
	(&progress{w: &buf, label: "resealing", total: 0, now: time.Now}).finish()
	p = &progress{w: &buf, label: "resealing", total: 2, now: time.Now}
	p.update(3)
	p.finish()
	if got := buf.String(); got != "resealing 3/2 (100%)\n" {
		t.Errorf("output = %q", got)
	}
}

func TestProgress_IsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Errorf("a file or a buffer counts as a terminal")
	}
	if newProgress(f, "x", 1).tty {
		t.Errorf("newProgress on a file draws a terminal bar")
	}
}
