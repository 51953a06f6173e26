package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Server is an [Emulator] listening on real TCP sockets, in the manner of
// httptest.Server. Its URLs have no trailing slash. Create one with [NewServer] or
// [Listen]; the zero value is not usable. Its methods are safe for concurrent use.
type Server struct {
	*Emulator
	// URL is the authorisation server's base URL (…/oauth/authorize, …/oauth/token).
	URL string
	// APIURL is the API's base URL (…/v1/introspect). It equals URL unless the API was
	// given a listener of its own.
	APIURL string
	// ControlURL is the control plane's base URL: URL + "/_emulator".
	ControlURL string

	servers []*http.Server
	wg      sync.WaitGroup
	errs    chan error
}

// NewServer starts an emulator on a random loopback port, serving the authorisation
// server, the API and the control plane together. Close it when done.
func NewServer(cfg Config) (*Server, error) {
	return Listen(cfg, "127.0.0.1:0", "")
}

// Listen starts an emulator on addr. If apiAddr is not empty, the API gets a listener of
// its own there; otherwise it is served on addr too.
func Listen(cfg Config, addr, apiAddr string) (*Server, error) {
	e, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{Emulator: e, errs: make(chan error, 2)}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: listen on %s: %w", addr, err)
	}
	s.URL = baseURL(ln.Addr())
	s.ControlURL = s.URL + "/_emulator"
	if apiAddr == "" {
		s.APIURL = s.URL
		s.serve(ln, e.Handler())
		return s, nil
	}
	apiLn, err := net.Listen("tcp", apiAddr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("emulator: listen on %s for the API: %w", apiAddr, err)
	}
	s.APIURL = baseURL(apiLn.Addr())
	s.serve(ln, e.AuthHandler())
	s.serve(apiLn, e.APIHandler())
	return s, nil
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- err
		}
	}()
}

// Err returns a channel that receives an error if a listener fails while serving.
func (s *Server) Err() <-chan error { return s.errs }

// Close stops the server at once, closing every connection. Requests in flight fail.
func (s *Server) Close() error {
	s.Emulator.Close()
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Close())
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Shutdown stops accepting connections and waits for requests in flight to finish, or for
// ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	s.Emulator.Close()
	s.wg.Wait()
	return errors.Join(errs...)
}

// baseURL turns a listener's address into a URL a client on this machine can use: a
// wildcard address (0.0.0.0, ::) is reachable as loopback.
func baseURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
