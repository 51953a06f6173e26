package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/proxy"
)

// frontServer serves p under /connections/{id}/proxy, passing Forward the
// still-escaped rest of the path as a router would. It parses the path by
// hand, not with http.ServeMux, which would clean ".." away before the
// proxy could refuse it.
func frontServer(t testing.TB, p *proxy.Proxy) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/connections/")
		id, path, found := strings.Cut(rest, "/proxy")
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		p.Forward(w, r, tokenkeeper.ConnectionID(id), path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sentRequest is one request as it left for the upstream.
type sentRequest struct {
	Method, Host, URI, Auth string
	Header                  http.Header
	body                    bytes.Buffer
}

// recorder is a RoundTripper over http.DefaultTransport that records what
// it sends, body included (as the transport reads it).
type recorder struct {
	mu   sync.Mutex
	reqs []*sentRequest
}

func (rec *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	s := &sentRequest{Method: req.Method, Host: req.URL.Host, URI: req.URL.RequestURI(),
		Auth: req.Header.Get("Authorization"), Header: req.Header.Clone()}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, s)
	rec.mu.Unlock()
	if req.Body != nil && req.Body != http.NoBody {
		out := new(http.Request)
		*out = *req
		out.Body = &teeBody{ReadCloser: req.Body, rec: rec, s: s}
		req = out
	}
	return http.DefaultTransport.RoundTrip(req)
}

// all returns the requests sent so far, with their bodies as read so far.
func (rec *recorder) all() []sentRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]sentRequest, len(rec.reqs))
	for i, s := range rec.reqs {
		out[i] = sentRequest{Method: s.Method, Host: s.Host, URI: s.URI, Auth: s.Auth, Header: s.Header}
		out[i].body.Write(s.body.Bytes())
	}
	return out
}

type teeBody struct {
	io.ReadCloser
	rec *recorder
	s   *sentRequest
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.rec.mu.Lock()
	b.s.body.Write(p[:n])
	b.rec.mu.Unlock()
	return n, err
}

// upstream is an httptest server that records every request it gets
// (body included) and then calls handler, if set, or answers a small JSON.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	got     []*http.Request
	bodies  [][]byte
	handler http.HandlerFunc
}

func newUpstream(t testing.TB, handler http.HandlerFunc) *upstream {
	u := &upstream{handler: handler}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u.handler != nil {
			u.record(r, nil)
			u.handler(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		u.record(r, body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) record(r *http.Request, body []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.got = append(u.got, r.Clone(context.Background()))
	u.bodies = append(u.bodies, body)
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.got...)
}

func (u *upstream) url(t testing.TB, path string) *url.URL {
	t.Helper()
	target, err := url.Parse(u.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// bearer is a Transport hook that sets a constant token, for tests that do
// not need the keeper.
func bearer(token string) func(tokenkeeper.ConnectionID) http.RoundTripper {
	return func(tokenkeeper.ConnectionID) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+token)
			return http.DefaultTransport.RoundTrip(r)
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// errorBody is the proxy's JSON error body.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends req with a test deadline and returns the status and the body.
func do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

// errorCode decodes the proxy's error body and returns its code, or "" if
// the body is not one.
func errorCode(body []byte) string {
	var b errorBody
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	return b.Error.Code
}

func newRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// waitFor polls cond; it is for state that has no channel to wait on (the
// emulator's fault script).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
