package browsertest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/tokenkeeper/tokenkeeper/internal/browsertest"
)

func TestLookup(t *testing.T) {
	// installed is a fake PATH: lookPath finds these names, and absolute paths as given.
	installed := map[string]string{"chromium-browser": "/usr/bin/chromium-browser", "/opt/chrome/chrome": "/opt/chrome/chrome"}
	lookPath := func(name string) (string, error) {
		if p, ok := installed[name]; ok {
			return p, nil
		}
		return "", fmt.Errorf("exec: %q: %w", name, fs.ErrNotExist)
	}
	none := func(name string) (string, error) { return "", fmt.Errorf("exec: %q: %w", name, fs.ErrNotExist) }
	tests := []struct {
		name     string
		env      map[string]string
		lookPath func(string) (string, error)
		wantPath string
		wantFail bool
		wantMsg  []string // substrings of the message; empty when a browser is found
	}{
		{"FoundOnPath", nil, lookPath, "/usr/bin/chromium-browser", false, nil},
		{"FoundOnPathUnderCI", map[string]string{"CI": "true"}, lookPath, "/usr/bin/chromium-browser", false, nil},
		{"EnvWins", map[string]string{"TOKENKEEPER_CHROMIUM": "/opt/chrome/chrome"}, lookPath, "/opt/chrome/chrome", false, nil},
		{"EnvMissingSkips", map[string]string{"TOKENKEEPER_CHROMIUM": "/nonexistent"}, lookPath, "", false,
			[]string{"Chromium not found", "apt-get install chromium", "TOKENKEEPER_CHROMIUM", "it is set, but", `"/nonexistent"`}},
		{"EnvMissingFailsUnderCI", map[string]string{"TOKENKEEPER_CHROMIUM": "/nonexistent", "CI": "true"}, lookPath, "", true,
			[]string{"Chromium not found", "CI is true"}},
		{"AbsentSkips", nil, none, "", false,
			[]string{"Chromium not found; install Debian's chromium (apt-get install chromium) or set TOKENKEEPER_CHROMIUM", "chromium-browser"}},
		{"AbsentSkipsWithCIFalse", map[string]string{"CI": "false"}, none, "", false, []string{"Chromium not found"}},
		{"AbsentSkipsWithCIEmpty", map[string]string{"CI": ""}, none, "", false, []string{"Chromium not found"}},
		{"AbsentFailsUnderCI", map[string]string{"CI": "true"}, none, "", true, []string{"Chromium not found", "CI is true"}},
		{"AbsentFailsUnderCI1", map[string]string{"CI": "1"}, none, "", true, []string{"CI is true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			path, fail, msg := browsertest.Lookup(getenv, tt.lookPath)
			if path != tt.wantPath || fail != tt.wantFail {
				t.Errorf("Lookup = %q, fail %v; want %q, fail %v (msg %q)", path, fail, tt.wantPath, tt.wantFail, msg)
			}
			if len(tt.wantMsg) == 0 && msg != "" {
				t.Errorf("msg = %q, want none when a browser is found", msg)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(msg, w) {
					t.Errorf("msg = %q, want it to contain %q", msg, w)
				}
			}
		})
	}
}

// TestNew drives a real browser: it loads a page, reads it back and saves a screenshot.
func TestNew(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>browsertest</title><h1 id="h">Hello from `+r.URL.Path+`</h1>`)
	}))
	defer page.Close()

	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/there")); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "browsertest" {
		t.Errorf("title = %q, %v; want browsertest", title, err)
	}
	h, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("h")))
	if err != nil || h != "Hello from /there" {
		t.Errorf("heading = %q, %v; want %q", h, err, "Hello from /there")
	}
	size, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[innerWidth, innerHeight]`))
	if want := []int{browsertest.ViewportWidth, browsertest.ViewportHeight}; err != nil || !slices.Equal(size, want) {
		t.Errorf("viewport = %v, %v; want %v", size, err, want)
	}

	path := filepath.Join(t.TempDir(), "shots", "page.png")
	if err := browsertest.SaveScreenshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot starts %q, want a PNG signature", png[:min(8, len(png))])
	}
}

func TestSaveScreenshot_NoBrowser(t *testing.T) {
	// A context that is not chromedp's fails the capture; nothing is written.
	path := filepath.Join(t.TempDir(), "x.png")
	if err := browsertest.SaveScreenshot(t.Context(), path); err == nil {
		t.Fatal("SaveScreenshot without a browser succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s: %v, want not exist", path, err)
	}
}
