package httpapi_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenkeeper/tokenkeeper/httpapi"
)

// exempt lists documented statuses the tests do not provoke, each with the
// reason. Keep it short: a status nobody can observe should not be
// documented.
var exempt = map[string]string{}

// TestMain runs the tests, then, on a full run (no -run, -skip or -short),
// fails if some operation's documented status was never observed, or an
// observed one is not documented.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && fullRun() {
		if problems := contractCoverage(); len(problems) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: the tests do not cover the contract (docs/openapi.yaml):\n\t%s\n",
				strings.Join(problems, "\n\t"))
			code = 1
		}
	}
	os.Exit(code)
}

func fullRun() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return !testing.Short()
}

// contractCoverage compares the statuses observed with those documented.
func contractCoverage() []string {
	doc, _, err := specOnce()
	if err != nil {
		return []string{err.Error()}
	}
	observed.Lock()
	defer observed.Unlock()
	var problems []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			seen := observed.m[op.OperationID]
			documented := op.Responses.Map()
			for status := range documented {
				if exempt[op.OperationID+" "+status] != "" {
					continue
				}
				n, _ := strconv.Atoi(status)
				if (status == "default" && len(seen) == 0) || (status != "default" && !seen[n]) {
					problems = append(problems, fmt.Sprintf("%s (%s %s): documented %s never observed", op.OperationID, method, path, status))
				}
			}
			for n := range seen {
				if documented[strconv.Itoa(n)] == nil && documented["default"] == nil {
					problems = append(problems, fmt.Sprintf("%s (%s %s): observed %d, not documented", op.OperationID, method, path, n))
				}
			}
		}
	}
	for n := range observed.m["unrouted"] {
		if !slices.Contains([]int{400, 404, 405}, n) {
			problems = append(problems, fmt.Sprintf("a route the contract lacks answered %d", n))
		}
	}
	slices.Sort(problems)
	return problems
}

func TestOpenAPI_Spec(t *testing.T) {
	doc, _ := loadSpec(t) // loads and validates
	t.Run("ErrorCodes", func(t *testing.T) {
		var enum []string
		for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
			enum = append(enum, v.(string))
		}
		var codes []string
		for _, c := range httpapi.Codes() {
			codes = append(codes, string(c))
		}
		if diff := cmp.Diff(codes, enum); diff != "" {
			t.Errorf("the contract's ErrorCode enum differs from httpapi.Codes() (-codes +enum):\n%s", diff)
		}
	})
	t.Run("ObjectsClosed", func(t *testing.T) {
		for name, s := range doc.Components.Schemas {
			if v := s.Value; v.Type.Is("object") && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
				t.Errorf("schema %s does not say additionalProperties", name)
			}
		}
	})
}
