package webui

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/connect"
)

// ConnectPages renders the pages an end user sees in a connect flow: the
// landing page of a connect link, and the success and failure pages of a
// flow that has no return URL. It implements httpapi.ConnectPages (its
// methods take only standard and root types, so neither package imports the
// other). The zero value is not usable; create it with [NewConnectPages].
// Safe for concurrent use.
//
// The pages need no JavaScript and load nothing: the stylesheet is inline,
// allowed by its hash in the Content-Security-Policy (never
// 'unsafe-inline').
type ConnectPages struct {
	cfg     ConnectConfig
	access  []string
	csp     string
	landing *template.Template
	outcome *template.Template
	css     template.CSS
	log     *slog.Logger
}

// ConnectConfig configures [ConnectPages]. Every zero value has the
// default named on its field.
type ConnectConfig struct {
	// AppName names the integrator's app to the end user ("Acme
	// Accounting"). "" means "This app".
	AppName string
	// ProviderName names the provider ("Pleo"). "" means "Pleo".
	ProviderName string
	// Scopes are the scopes the flow asks for; the landing page says what
	// each allows in a sentence ([ScopeSentence]). nil says that the
	// provider lists the access on its consent page.
	Scopes []string
	// AuthURL is the provider's authorisation endpoint, which the landing
	// page's form ends up at (after a 303): its origin is added to the
	// page's form-action, since browsers check form-action on the
	// redirects after a submission. "" allows only this origin.
	AuthURL string
	// Logger receives rendering failures. nil discards.
	Logger *slog.Logger
}

// NewConnectPages returns the connect pages for cfg. It fails with
// CodeInvalid if AuthURL is set but not an absolute URL.
func NewConnectPages(cfg ConnectConfig) (*ConnectPages, error) {
	p := &ConnectPages{cfg: cfg, log: cfg.Logger}
	if p.cfg.AppName == "" {
		p.cfg.AppName = "This app"
	}
	if p.cfg.ProviderName == "" {
		p.cfg.ProviderName = "Pleo"
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	formAction := "'self'"
	if cfg.AuthURL != "" {
		u, err := url.Parse(cfg.AuthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "webui: ConnectConfig.AuthURL %q is not an absolute http(s) URL", cfg.AuthURL)
		}
		formAction += " " + u.Scheme + "://" + u.Host
	}
	for _, s := range cfg.Scopes {
		p.access = append(p.access, ScopeSentence(s))
	}
	p.css = template.CSS(styleCSS)
	sum := sha256.Sum256([]byte(styleCSS))
	p.csp = "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src 'none'; base-uri 'none'; form-action " + formAction + "; frame-ancestors 'none'"
	p.landing = pageTemplate("connect_layout", "connect_layout.html", "landing.html")
	p.outcome = pageTemplate("connect_layout", "connect_layout.html", "outcome.html")
	return p, nil
}

// scopeSentences say in plain words what each Pleo scope allows. The list
// is Pleo's documented scopes (see the emulator's, which plays Pleo).
var scopeSentences = map[string]string{
	"accounting-entries:read": "read your company's accounting entries",
	"accounts:read":           "see your chart of accounts",
	"accounts:write":          "change your chart of accounts",
	"export-items:read":       "read the expenses you export",
	"export-jobs:read":        "see your export jobs",
	"export-jobs:write":       "start exports of your expenses",
	"users:read":              "see the people in your company",
	"users:write":             "add and change the people in your company",
	"test:test":               "make test calls (no company data)",
}

// ScopeSentence returns what scope allows, as words that complete "it will
// be able to ...". A scope it does not know reads as its resource and
// permission ("use invoices (write)").
func ScopeSentence(scope string) string {
	if s, ok := scopeSentences[scope]; ok {
		return s
	}
	resource, perm, ok := strings.Cut(scope, ":")
	resource = strings.ReplaceAll(resource, "-", " ")
	switch {
	case !ok:
		return "use " + resource
	case perm == "read":
		return "read your " + resource
	case perm == "write":
		return "change your " + resource
	}
	return "use " + resource + " (" + perm + ")"
}

// Landing writes the landing page of a connect link (httpapi.ConnectPages).
func (p *ConnectPages) Landing(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusOK, p.landing, connectView{Title: "Connect " + p.cfg.ProviderName, Access: p.access})
}

// Outcome writes the page that ends a flow with no return URL
// (httpapi.ConnectPages): err nil means connected. Every failure gets a
// message in plain words and what to do next; its reason code is shown
// in small print, for support, and the error's own text never is.
func (p *ConnectPages) Outcome(w http.ResponseWriter, r *http.Request, status int, id tokenkeeper.ConnectionID, err error) {
	v := connectView{ConnectionID: id}
	if err == nil {
		v.OK = true
		v.Title = "You're connected"
		v.Message = p.cfg.AppName + " now has the access you approved on " + p.cfg.ProviderName + ". You can close this window."
		if status == 0 {
			status = http.StatusOK
		}
		p.render(w, r, status, p.outcome, v)
		return
	}
	var fe *connect.FlowError
	reason := connect.ReasonInternal
	if errors.As(err, &fe) {
		reason = fe.Reason
	}
	v.Reason = string(reason)
	v.Title, v.Message, v.Next = p.explain(reason, tokenkeeper.ErrorCode(err))
	// Opening a link that failed on our side leaves it unspent (the flow
	// puts it back): the same POST can simply be tried again.
	v.Retry = r.Method == http.MethodPost && reason == connect.ReasonInternal
	p.render(w, r, status, p.outcome, v)
}

// explain returns the title, the message and the next step for a failure.
func (p *ConnectPages) explain(reason connect.Reason, code tokenkeeper.Code) (title, msg, next string) {
	app, prov := p.cfg.AppName, p.cfg.ProviderName
	askNew := "Ask " + app + " for a new connect link, and open it in this browser."
	switch reason {
	case connect.ReasonDenied:
		return "No access was given", "You declined the request on " + prov + ", so " + app + " was not connected. Nothing was shared.",
			"If that was a mistake, " + lower(askNew) + " Then approve the request on " + prov + "."
	case connect.ReasonLinkUnknown:
		return "This link has already been used", "Each connect link works only once, and this one was used already or is not complete.",
			"If you just connected, you are done. Otherwise, " + lower(askNew)
	case connect.ReasonLinkExpired:
		return "This link has expired", "For your security, connect links work only for a limited time.", askNew
	case connect.ReasonStateExpired:
		return "The approval took too long", "For your security, approving on " + prov + " must be finished within a few minutes of opening the link.", askNew
	case connect.ReasonStateUnknown, connect.ReasonStateMissing:
		return "This page can't be used to connect", "We could not match this page to a connection you started. It may have been opened twice, reloaded, or reached from another site.", askNew
	case connect.ReasonWrongBrowser:
		return "Please finish in the same browser", "For your security, the approval must be finished in the browser that opened the connect link. This browser did not open it.",
			"Ask " + app + " for a new connect link, and open it and approve it in one browser."
	case connect.ReasonMissingCode:
		return "The answer from " + prov + " was incomplete", prov + " sent you back without the approval we expected, so nothing was connected.", askNew
	case connect.ReasonProviderError, connect.ReasonExchangeFailed:
		switch code {
		case tokenkeeper.CodeUnavailable:
			return prov + " is not responding right now", "We could not complete the connection because " + prov + " is unavailable at the moment. Nothing was connected.",
				"Wait a few minutes, then " + lower(askNew)
		case tokenkeeper.CodeUnauthorized:
			return app + " could not be connected", prov + " refused " + app + "'s own registration, so the connection could not be completed. This is not something you did.",
				"Please let " + app + "'s support know, and try again once they have fixed it."
		}
		return app + " could not be connected", prov + " could not complete the request, so nothing was connected.",
			"Try again with a new link: " + lower(askNew) + " If it keeps happening, contact " + app + "'s support."
	}
	if code == tokenkeeper.CodeUnavailable {
		return "We're having trouble right now", "Something on our side is briefly unavailable. Nothing was connected.", "Wait a minute, then try again."
	}
	return "Something went wrong", "Something went wrong on our side, and nothing was connected. It was not caused by anything you did.",
		"Try again. If it keeps happening, " + lower(askNew)
}

// lower lowercases the first letter of s.
func lower(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// connectView is what the connect templates read.
type connectView struct {
	App, Provider string
	CSS           template.CSS
	Title         string
	Access        []string
	OK            bool
	Message, Next string
	Retry         bool
	ConnectionID  tokenkeeper.ConnectionID
	Reason        string
}

func (p *ConnectPages) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, v connectView) {
	v.App, v.Provider, v.CSS = p.cfg.AppName, p.cfg.ProviderName, p.css
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "connect_layout", v); err != nil {
		p.log.ErrorContext(r.Context(), "webui: render a connect page", "error", err)
		http.Error(w, "Something went wrong. Please try again.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Content-Security-Policy", p.csp)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
