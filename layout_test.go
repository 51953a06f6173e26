package tokenkeeper_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// This file enforces the dependency direction of CONVENTIONS.md with
// `go list -deps`. The rules are written over top-level directories, so they
// start to bite as soon as a directory such as sqlite/ exists.

const module = "github.com/tokenkeeper/tokenkeeper"

var (
	// adapters each adapt one technology and never import one another.
	adapters = []string{"sqlite", "postgres", "seal", "httpapi", "proxy", "webui", "webhook"}
	// orchestrators take root interfaces and never import an adapter.
	orchestrators = []string{"keeper", "connect"}
)

// listedPackage is the part of `go list -json` output the rules read.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string // direct imports
	Deps       []string // transitive imports
	Error      *struct{ Err string }
}

// area returns the top-level directory of importPath inside the module:
// "" for the root package, "sqlite" for sqlite/internal/x. ok is false for
// packages outside the module.
func area(importPath string) (dir string, ok bool) {
	if importPath == module {
		return "", true
	}
	rest, ok := strings.CutPrefix(importPath, module+"/")
	if !ok {
		return "", false
	}
	dir, _, _ = strings.Cut(rest, "/")
	return dir, true
}

// command returns "cmd/name" for a package under cmd/name, or "".
func command(importPath string) string {
	rest, ok := strings.CutPrefix(importPath, module+"/cmd/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return "cmd/" + name
}

// checkLayout returns one line per broken rule, sorted.
func checkLayout(pkgs []listedPackage) []string {
	standard := make(map[string]bool)
	for _, p := range pkgs {
		standard[p.ImportPath] = p.Standard
	}
	var bad []string
	report := func(rule, from, to, why string) {
		bad = append(bad, fmt.Sprintf("%s: %s imports %s: %s", rule, from, to, why))
	}
	for _, p := range pkgs {
		from, ok := area(p.ImportPath)
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if command(imp) != "" && command(imp) != command(p.ImportPath) {
				report("rule 4", p.ImportPath, imp, "nothing imports cmd/")
			}
		}
		for _, dep := range p.Deps {
			to, inModule := area(dep)
			switch {
			case p.ImportPath == module && !standard[dep]:
				report("rule 1", p.ImportPath, dep, "the root package imports only the standard library")
			case from == "emulator" && inModule && to != "emulator":
				report("emulator", p.ImportPath, dep, "the emulator plays a third party and shares none of our types")
			case inModule && slices.Contains(adapters, from) && slices.Contains(adapters, to) && to != from:
				report("rule 2", p.ImportPath, dep, "adapters never import one another")
			case inModule && slices.Contains(orchestrators, from) && slices.Contains(adapters, to):
				report("rule 3", p.ImportPath, dep, "orchestrators never import a concrete adapter")
			case slices.Contains(testOnly, dep) && !slices.Contains(testOnly, p.ImportPath):
				report("test-only", p.ImportPath, dep, "test helpers (and chromedp) never reach a shipped package")
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// testOnly are the packages of test helpers, which only tests may import:
// browser tests (with chromedp) and captured logs.
var testOnly = []string{module + "/internal/browsertest", module + "/internal/logtest"}

func TestCheckLayout(t *testing.T) {
	const m = module + "/"
	// pkg builds a package with direct imports; deps are filled in below.
	pkg := func(path string, imports ...string) listedPackage {
		return listedPackage{ImportPath: path, Standard: !strings.Contains(path, "."), Imports: imports}
	}
	tests := []struct {
		name string
		pkgs []listedPackage
		want []string // substrings, one per expected violation
	}{
		{"Clean", []listedPackage{
			pkg(module, "fmt"), pkg("fmt", "errors"), pkg("errors"),
			pkg(m+"sqlite", module, m+"sqlite/internal/migrate", "example.com/driver"),
			pkg(m+"sqlite/internal/migrate", "embed"), pkg("embed"), pkg("example.com/driver"),
			pkg(m+"keeper", module, m+"internal/flight"), pkg(m+"internal/flight", "sync"), pkg("sync"),
			pkg(m+"emulator", m+"emulator/internal/pleo", "net/http"), pkg(m + "emulator/internal/pleo"), pkg("net/http"),
			pkg(m+"cmd/tokenkeeper", m+"sqlite", m+"keeper", m+"emulator", m+"cmd/tokenkeeper/internal/config"),
			pkg(m + "cmd/tokenkeeper/internal/config"),
			pkg(module+"other/sqlite", module+"other/postgres"), pkg(module + "other/postgres"),
		}, nil},
		{"RootImportsThirdParty", []listedPackage{
			pkg(module, "fmt", "github.com/google/go-cmp/cmp"), pkg("fmt"), pkg("github.com/google/go-cmp/cmp"),
		}, []string{"rule 1: " + module + " imports github.com/google/go-cmp/cmp"}},
		{"RootImportsSubpackageTransitively", []listedPackage{
			pkg(module, "fmt"), pkg("fmt", m+"internal/x"), pkg(m + "internal/x"),
		}, []string{"rule 1: " + module + " imports " + m + "internal/x"}},
		{"ImportsCmd", []listedPackage{
			pkg(m+"keeper", m+"cmd/tokenkeeper"), pkg(m + "cmd/tokenkeeper"),
			pkg(m+"cmd/other", m+"cmd/tokenkeeper/internal/config"), pkg(m + "cmd/tokenkeeper/internal/config"),
		}, []string{"rule 4: " + m + "cmd/other imports", "rule 4: " + m + "keeper imports"}},
		{"EmulatorImportsRootTransitively", []listedPackage{
			pkg(m+"emulator/server", m+"emulator/internal/x"), pkg(m+"emulator/internal/x", m+"internal/y"),
			pkg(m+"internal/y", module), pkg(module),
		}, []string{
			"emulator: " + m + "emulator/internal/x imports " + m + "internal/y",
			"emulator: " + m + "emulator/internal/x imports " + module + ":",
			"emulator: " + m + "emulator/server imports " + m + "internal/y",
			"emulator: " + m + "emulator/server imports " + module + ":",
		}},
		{"AdapterImportsAdapter", []listedPackage{
			pkg(m+"httpapi", m+"seal"), pkg(m + "seal"),
			pkg(m+"webhook/internal/outbox", m+"internal/z"), pkg(m+"internal/z", m+"postgres"), pkg(m + "postgres"),
		}, []string{
			"rule 2: " + m + "httpapi imports " + m + "seal",
			"rule 2: " + m + "webhook/internal/outbox imports " + m + "postgres",
		}},
		{"ShippedPackageImportsBrowserTest", []listedPackage{
			pkg(m+"webui", m+"internal/browsertest"), pkg(m+"internal/browsertest", "example.com/chromedp"),
			pkg("example.com/chromedp"),
		}, []string{"test-only: " + m + "webui imports " + m + "internal/browsertest"}},
		{"ShippedPackageImportsLogTest", []listedPackage{
			pkg(m+"keeper", m+"internal/logtest"), pkg(m + "internal/logtest"),
		}, []string{"test-only: " + m + "keeper imports " + m + "internal/logtest"}},
		{"OrchestratorImportsAdapter", []listedPackage{
			pkg(m+"keeper", m+"sqlite"), pkg(m + "sqlite"), pkg(m+"connect/pkce", m+"proxy/x"), pkg(m + "proxy/x"),
		}, []string{
			"rule 3: " + m + "connect/pkce imports " + m + "proxy/x",
			"rule 3: " + m + "keeper imports " + m + "sqlite",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkLayout(withDeps(tt.pkgs))
			if len(got) != len(tt.want) {
				t.Fatalf("checkLayout found %d violations, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// withDeps fills in Deps as the transitive closure of Imports, as go list does.
func withDeps(pkgs []listedPackage) []listedPackage {
	imports := make(map[string][]string)
	for _, p := range pkgs {
		imports[p.ImportPath] = p.Imports
	}
	out := slices.Clone(pkgs)
	for i := range out {
		seen := make(map[string]bool)
		var visit func(string)
		visit = func(path string) {
			for _, imp := range imports[path] {
				if !seen[imp] {
					seen[imp] = true
					visit(imp)
				}
			}
		}
		visit(out[i].ImportPath)
		out[i].Deps = slices.Sorted(maps.Keys(seen))
	}
	return out
}

func TestLayout(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH; cannot run go list to check the dependency rules")
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		t.Fatalf("go env GOMOD = %q, %v; want the module's go.mod", gomod, err)
	}
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Standard,Imports,Deps,Error", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}

	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.Error != nil {
			// Packages others are writing may not build yet; their imports
			// still count, but a build error is not a layout error.
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	root := slices.IndexFunc(pkgs, func(p listedPackage) bool { return p.ImportPath == module })
	if root < 0 || len(pkgs[root].Deps) == 0 || !slices.ContainsFunc(pkgs, func(p listedPackage) bool { return p.Standard }) {
		t.Fatalf("go list output lacks the root package, its Deps or any standard package; the rules would pass vacuously")
	}
	if bad := checkLayout(pkgs); len(bad) > 0 {
		t.Errorf("dependency rules of CONVENTIONS.md broken:\n%s", strings.Join(bad, "\n"))
	}
}
