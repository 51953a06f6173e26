package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// ConnectSessionRequest is the JSON body of POST /v1/connect-sessions.
type ConnectSessionRequest struct {
	// ConnectionID is the connection to connect, or to reconnect.
	ConnectionID tokenkeeper.ConnectionID `json:"connection_id"`
	// ReturnTo, if set, is where the user's browser goes when the flow ends,
	// with connection_id and status (connected or error, and then code)
	// added to its query. It must be a path on this host or lie under the
	// flow's allowed return URLs.
	ReturnTo string `json:"return_to,omitempty"`
	// ExpiresIn is how long the link stays usable, in seconds, from 1 to
	// [MaxConnectSessionSeconds]; 0 means the flow's default.
	ExpiresIn int64 `json:"expires_in,omitempty"`
}

// MaxConnectSessionSeconds bounds ConnectSessionRequest.ExpiresIn: the
// longest link the flow makes ([connect.MaxLinkTTL]).
const MaxConnectSessionSeconds = int64(connect.MaxLinkTTL / time.Second)

// ConnectSession is the JSON body of POST /v1/connect-sessions' 201. URL is
// a single-use link that lets whoever opens it connect ConnectionID: hand
// it to the user, and keep it out of logs.
type ConnectSession struct {
	URL          string                   `json:"url"`
	ExpiresAt    time.Time                `json:"expires_at"`
	ConnectionID tokenkeeper.ConnectionID `json:"connection_id"`
}

func (s *Server) createConnectSession(w http.ResponseWriter, r *http.Request, key *tokenkeeper.APIKey) error {
	var req ConnectSessionRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.ConnectionID.Validate(); err != nil {
		return invalidf("connection_id: %s", tokenkeeper.ErrorMessage(err))
	}
	if req.ExpiresIn < 0 || req.ExpiresIn > MaxConnectSessionSeconds {
		return invalidf("expires_in must be from 1 to %d seconds", MaxConnectSessionSeconds)
	}
	link, err := s.cfg.Flow.NewLink(r.Context(), connect.LinkRequest{ConnectionID: req.ConnectionID,
		ReturnURL: req.ReturnTo, TTL: time.Duration(req.ExpiresIn) * time.Second})
	if err != nil {
		return err
	}
	s.audit(r, key, "connect_session.create", link.ConnectionID, "expires_at="+link.ExpiresAt.UTC().Format(time.RFC3339))
	s.writeJSON(w, r, http.StatusCreated, ConnectSession{
		URL:       strings.TrimSuffix(s.cfg.PublicURL.String(), "/") + "/connect/" + url.PathEscape(link.Token.Reveal()),
		ExpiresAt: link.ExpiresAt.UTC(), ConnectionID: link.ConnectionID,
	})
	return nil
}

// bindingCookie holds the browser binding of a flow (connect.BeginRequest's
// Binding) from /connect/{token} to /oauth/callback.
const (
	bindingCookie = "tokenkeeper_binding"
	bindingMaxAge = 15 * 60
)

// landing serves GET /connect/{token}: a page that says what the link is
// for, with one button that POSTs back to the same URL. It spends nothing
// and looks nothing up, so that link previews (chat apps, mail scanners
// that fetch every link) leave the link usable. HEAD answers the same
// headers, without a body.
func (s *Server) landing(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Pages != nil {
		s.cfg.Pages.Landing(w, r)
		return
	}
	// The built-in page's form posts here, and the answer redirects to the
	// provider, which a form-action list would have to name.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	s.page(w, r, http.StatusOK, page{Title: "Connect your Pleo account",
		Message: "Continue to Pleo to review and approve the access this app asks for.", Button: "Continue to Pleo"})
}

// openLink serves POST /connect/{token}, the landing page's button: it
// spends the link, binds a new flow to this browser and sends it to the
// provider.
func (s *Server) openLink(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	binding := base64.RawURLEncoding.EncodeToString(b)
	authURL, err := s.cfg.Flow.OpenLink(r.Context(), r.PathValue("token"), binding)
	if err != nil {
		s.flowFailed(w, r, err)
		return
	}
	http.SetCookie(w, s.cookie(binding, bindingMaxAge))
	// 303: the browser follows with a GET, whatever its method was.
	w.Header().Set("Location", authURL)
	w.WriteHeader(http.StatusSeeOther)
}

// callback serves GET /oauth/callback, the OAuth redirect URI (RFC 6749
// section 4.1.2).
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	var binding string
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	http.SetCookie(w, s.cookie("", -1)) // used once, whatever the outcome
	res, err := s.cfg.Flow.Callback(r.Context(), connect.CallbackRequest{Query: r.URL.Query(), Binding: binding})
	if err != nil {
		s.flowFailed(w, r, err)
		return
	}
	if res.Connection == nil {
		s.flowFailed(w, r, tokenkeeper.Errorf(tokenkeeper.CodeInternal, "connect: Callback returned no connection and no error"))
		return
	}
	id := res.Connection.ID
	if res.ReturnURL == "" {
		if s.cfg.Pages != nil {
			s.cfg.Pages.Outcome(w, r, http.StatusOK, id, nil)
			return
		}
		s.page(w, r, http.StatusOK, page{Title: "Connected",
			Message: fmt.Sprintf("The connection %s is ready. You can close this window.", id)})
		return
	}
	redirectBack(w, res.ReturnURL, id, "connected", "")
}

func (s *Server) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: bindingCookie, Value: value, Path: s.callbackPath, MaxAge: maxAge,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode}
}

// flowFailed answers a failed link or callback: back to the flow's return
// URL if it has one, else with a page.
func (s *Server) flowFailed(w http.ResponseWriter, r *http.Request, err error) {
	var fe *connect.FlowError
	if errors.As(err, &fe) && fe.ReturnURL != "" {
		redirectBack(w, fe.ReturnURL, fe.ConnectionID, "error", string(fe.Reason))
		return
	}
	code, msg := classify(err)
	status := Status(code)
	switch {
	case fe != nil && fe.Reason == connect.ReasonLinkUnknown:
		status = http.StatusNotFound
	case fe != nil && fe.Reason == connect.ReasonLinkExpired:
		status = http.StatusGone
	case code == tokenkeeper.CodeInternal:
		s.log.ErrorContext(r.Context(), "http: connect flow failed", "route", routeOf(r), "error", err)
		msg = "Something went wrong on our side. Please start connecting again."
	case code == tokenkeeper.CodeUnauthorized:
		// The provider refused tokenkeeper's own client, not the user.
		status = http.StatusBadGateway
	case code == tokenkeeper.CodeUnavailable:
		w.Header().Set("Retry-After", fmt.Sprint(RetryAfter))
	}
	if s.cfg.Pages != nil {
		var id tokenkeeper.ConnectionID
		if fe != nil {
			id = fe.ConnectionID
		}
		s.cfg.Pages.Outcome(w, r, status, id, err)
		return
	}
	p := page{Title: "Could not connect", Message: msg}
	if fe != nil {
		p.Reason = string(fe.Reason)
	}
	s.page(w, r, status, p)
}

// redirectBack sends the browser to returnURL with connection_id, status and
// (for errors) code set in its query; the rest of its query is kept as it
// was.
func redirectBack(w http.ResponseWriter, returnURL string, id tokenkeeper.ConnectionID, status, code string) {
	u, err := url.Parse(returnURL)
	if err != nil { // the flow checked it; cannot happen
		u = &url.URL{Path: "/"}
	}
	add := url.Values{"connection_id": {string(id)}, "status": {status}}
	if code != "" {
		add.Set("code", code)
	}
	var kept []string
	for _, pair := range strings.Split(u.RawQuery, "&") {
		name, _, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); pair == "" || (err == nil && add.Has(n)) || n == "code" {
			continue
		}
		kept = append(kept, pair)
	}
	u.RawQuery = strings.Join(append(kept, add.Encode()), "&")
	redirect(w, u.String())
}

// redirect answers 302 Found with no body: unlike http.Redirect it does not
// echo the URL (which may hold the flow's state) into an HTML body.
func redirect(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusFound)
}
