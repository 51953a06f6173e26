package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specPath is the contract every response is checked against.
const specPath = "../docs/openapi.yaml"

var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadSpec loads and validates the OpenAPI document, once.
func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	doc, router, err := specOnce()
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	return doc, router
}

func specOnce() (*openapi3.T, routers.Router, error) {
	spec.once.Do(func() {
		// The pages are HTML; kin-openapi reads them as plain text.
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		loader := openapi3.NewLoader()
		spec.doc, spec.err = loader.LoadFromFile(specPath)
		if spec.err == nil {
			spec.err = spec.doc.Validate(loader.Context)
		}
		if spec.err == nil {
			spec.router, spec.err = gorillamux.NewRouter(spec.doc)
		}
	})
	return spec.doc, spec.router, spec.err
}

// tbKey carries the running test in a request's context, so that the
// contract's complaints name the (sub)test that made the request.
type tbKey struct{}

// tctx returns a context that names t for the contract checks.
func tctx(t testing.TB) context.Context { return context.WithValue(t.Context(), tbKey{}, t) }

// observed records, across the whole test run, which statuses each
// operation answered; "unrouted" collects answers for paths or methods the
// contract has no operation for.
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool
}{m: map[string]map[int]bool{}}

func observe(op string, status int) {
	observed.Lock()
	defer observed.Unlock()
	if observed.m[op] == nil {
		observed.m[op] = map[int]bool{}
	}
	observed.m[op][status] = true
}

// contractTransport checks each request and response against the contract:
// the response must be documented for its operation and status and match
// its schema and headers; a request the contract forbids must get a 4xx;
// every response carries the security headers. Answers for paths or methods
// without an operation must be the JSON 404, 405 or 400.
type contractTransport struct {
	t    testing.TB
	base http.RoundTripper

	mu     sync.Mutex
	bodies []seenBody
}

type seenBody struct {
	op     string
	status int
	body   string
}

func (c *contractTransport) seen() []seenBody {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]seenBody(nil), c.bodies...)
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := c.t
	if tt, ok := req.Context().Value(tbKey{}).(testing.TB); ok {
		t = tt
	}
	t.Helper()
	doc, router, err := specOnce()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	vreq := validationRequest(req, reqBody)
	route, params, routeErr := router.FindRoute(vreq)
	var reqErr error
	var input *openapi3filter.RequestValidationInput
	if routeErr == nil {
		input = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent}}
		reqErr = openapi3filter.ValidateRequest(context.Background(), input)
	}

	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	what := fmt.Sprintf("%s %s -> %d", req.Method, req.URL.EscapedPath(), resp.StatusCode)

	op := "unrouted"
	if routeErr == nil {
		op = route.Operation.OperationID
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}); err != nil {
			t.Errorf("contract: %s: the response breaks the contract: %v\nbody: %s", what, err, body)
		}
		if reqErr != nil && resp.StatusCode < 400 {
			t.Errorf("contract: %s: the server accepted a request the contract forbids: %v", what, reqErr)
		}
	} else {
		checkUnrouted(t, doc, what, routeErr, resp, body)
	}
	checkSecurityHeaders(t, what, resp.Header)
	observe(op, resp.StatusCode)
	c.mu.Lock()
	c.bodies = append(c.bodies, seenBody{op: op, status: resp.StatusCode, body: string(body)})
	c.mu.Unlock()
	return resp, nil
}

// validationRequest returns the request as the contract's router should
// see it. OpenAPI path parameters cannot hold slashes, so the proxy's rest
// of path becomes one escaped segment.
func validationRequest(req *http.Request, body []byte) *http.Request {
	v := req.Clone(context.Background())
	v.Body = io.NopCloser(bytes.NewReader(body))
	p := req.URL.EscapedPath()
	if before, rest, ok := strings.Cut(p, "/proxy/"); ok && strings.HasPrefix(before, "/v1/connections/") &&
		!strings.Contains(strings.TrimPrefix(before, "/v1/connections/"), "/") {
		if rest == "" {
			rest = "_"
		}
		u := *req.URL
		u.RawPath = before + "/proxy/" + url.PathEscape(rest)
		u.Path, _ = url.PathUnescape(u.RawPath)
		v.URL = &u
	}
	return v
}

// bearerPresent is the contract's check of the bearer scheme: a header of
// the right shape. Whether the key is good is the server's business.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if scheme, key, ok := strings.Cut(h, " "); !ok || !strings.EqualFold(scheme, "bearer") || key == "" {
		return errors.New("no bearer token")
	}
	return nil
}

// checkUnrouted checks an answer for a path or method without an
// operation: a JSON error, 404 not_found, 405 method_not_allowed with
// Allow, or 400 invalid for a path with dot segments.
func checkUnrouted(t testing.TB, doc *openapi3.T, what string, routeErr error, resp *http.Response, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("contract: %s: the body is not JSON: %s", what, body)
		return
	}
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(v); err != nil {
		t.Errorf("contract: %s: the body is not an Error: %v", what, err)
	}
	code := v.(map[string]any)["error"].(map[string]any)["code"]
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed && code == "method_not_allowed":
		if resp.Header.Get("Allow") == "" || !errors.Is(routeErr, routers.ErrMethodNotAllowed) {
			t.Errorf("contract: %s: a 405 needs an Allow header, and a path the contract serves (%v)", what, routeErr)
		}
	case resp.StatusCode == http.StatusNotFound && code == "not_found":
	case resp.StatusCode == http.StatusBadRequest && code == "invalid":
	default:
		t.Errorf("contract: %s: code %v is not the answer for a route the contract lacks (%v)", what, code, routeErr)
	}
}

// checkSecurityHeaders checks the headers every response carries, first
// (a proxied response may add its own after ours).
func checkSecurityHeaders(t testing.TB, what string, h http.Header) {
	t.Helper()
	wantHeaders := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
	if csp := h.Get("Content-Security-Policy"); strings.HasPrefix(h.Get("Content-Type"), "text/html") &&
		csp != wantHeaders["Content-Security-Policy"] {
		// A page with a form (the connect landing page) may allow its
		// form's target, and a renderer its own styles; never scripts, and
		// never framing.
		for _, must := range []string{"default-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, must) || strings.Contains(csp, "script-src") {
				t.Errorf("%s: a page's Content-Security-Policy %q lacks %s or allows scripts", what, csp, must)
			}
		}
		delete(wantHeaders, "Content-Security-Policy")
	}
	for name, value := range wantHeaders {
		if got := h.Values(name); len(got) == 0 || got[0] != value {
			t.Errorf("%s: %s is %q, want %q", what, name, got, value)
		}
	}
	if strings.HasPrefix(h.Get("Content-Type"), "text/html") && !strings.Contains(h.Get("Content-Type"), "charset=utf-8") {
		t.Errorf("%s: a page without charset=utf-8", what)
	}
}
