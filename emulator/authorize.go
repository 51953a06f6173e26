package emulator

import (
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// handleAuthorize serves GET /oauth/authorize (RFC 6749 §4.1.1, RFC 7636 §4.3).
//
// Until the client and its redirect URI are known to be genuine, errors are shown on a page
// and never redirected (RFC 6749 §4.1.2.1): redirecting to an unverified URI would make the
// server an open redirector. After that, errors go back to the client with state.
func (e *Emulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		e.errorPage(w, http.StatusMethodNotAllowed, "The authorisation request must be a GET.")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		e.errorPage(w, http.StatusBadRequest, "The authorisation request is malformed.")
		return
	}
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(q[k]) > 1 {
			e.errorPage(w, http.StatusBadRequest, "The parameter "+k+" is repeated.")
			return
		}
	}
	e.mu.Lock()
	c := e.clients[q.Get("client_id")]
	e.unlock()
	redirectURI := q.Get("redirect_uri")
	switch {
	case q.Get("client_id") == "":
		e.errorPage(w, http.StatusBadRequest, "The request names no client_id.")
		return
	case c == nil:
		e.errorPage(w, http.StatusBadRequest, "The client "+q.Get("client_id")+" is not registered.")
		return
	case redirectURI == "":
		e.errorPage(w, http.StatusBadRequest, "The request names no redirect_uri.")
		return
	case !contains(c.RedirectURIs, redirectURI):
		e.errorPage(w, http.StatusBadRequest, "The redirect_uri is not registered for this client. It must match a registered URI exactly.")
		return
	}

	dropEmpty(q)
	state := q.Get("state")
	fail := func(code, desc string) {
		e.mu.Lock()
		e.ledger.count(EndpointAuthorize, code)
		e.unlock()
		redirectWith(w, r, redirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {state}})
	}
	for k, v := range q {
		if len(v) > 1 {
			fail("invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case q.Get("response_type") == "":
		fail("invalid_request", "response_type is required")
		return
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case state == "":
		fail("invalid_request", "state is required")
		return
	case challenge == "" || method != "S256":
		detail := "code_challenge is missing"
		if challenge != "" {
			detail = "code_challenge_method " + strconvQuote(method) + " is not S256 (plain is refused)"
		}
		e.mu.Lock()
		e.ledger.violate(RulePKCEMissing, "", e.clock.Now(), "client "+strconvQuote(c.ID)+": "+detail)
		e.unlock()
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required: "+detail)
		return
	case len(challenge) != 43 || !validPKCEString(challenge):
		fail("invalid_request", "code_challenge must be the 43-character base64url SHA-256 of the verifier")
		return
	}
	scopes := c.Scopes
	if s, ok := q["scope"]; ok {
		scopes = scopeList(s[0])
		if len(scopes) == 0 {
			fail("invalid_scope", "scope is empty")
			return
		}
		if missing, ok := subsetOf(scopes, c.Scopes); !ok {
			fail("invalid_scope", "scope "+missing+" is unknown or not allowed for this client")
			return
		}
	}
	var preselect *company
	if subj := q.Get("urn_pleo_params_oauth_subject"); subj != "" {
		if preselect = companyBySubject(subj); preselect == nil {
			fail("invalid_request", "urn_pleo_params_oauth_subject names no known company")
			return
		}
	}
	d := e.faults.pick(EndpointAuthorize)
	if d.beforeProcessing() && d.kind != FaultDropBefore {
		// The client is verified, so a server error goes back to it as a redirect: a
		// browser cannot carry a 5xx to the client (RFC 6749 §4.1.2.1).
		e.applyBefore(w, decision{latency: d.latency}, EndpointAuthorize, "", "", true)
		code := "temporarily_unavailable"
		if d.kind == Fault500 {
			code = "server_error"
		}
		e.mu.Lock()
		e.ledger.count(EndpointAuthorize, "fault:"+d.kind)
		e.unlock()
		redirectWith(w, r, redirectURI, url.Values{"error": {code}, "error_description": {"injected fault"}, "state": {state}})
		return
	}
	if e.applyBefore(w, d, EndpointAuthorize, "", "", true) {
		return
	}

	req := &consentRequest{
		id: randomString(24), client: c, redirectURI: redirectURI, state: state,
		challenge: challenge, scopes: scopes, expiresAt: e.clock.Now().Add(consentTTL),
		fault: d.kind,
	}
	if e.cfg.AutoApprove {
		co := preselect
		if co == nil {
			co = companies[0]
		}
		e.approve(w, r, req, co)
		return
	}
	e.mu.Lock()
	if len(e.st.consents) >= maxPendingConsents {
		e.sweepConsentsLocked()
	}
	full := len(e.st.consents) >= maxPendingConsents
	if !full {
		e.st.consents[req.id] = req
	}
	e.unlock()
	if full {
		e.errorPage(w, http.StatusServiceUnavailable, "Too many consent pages are open. Answer or abandon some, then try again.")
		return
	}
	e.renderConsent(w, req, preselect)
}

// maxPendingConsents bounds the open consent pages; expired ones are swept when it is
// reached, so abandoned pages cannot grow memory without bound.
const maxPendingConsents = 10000

func (e *Emulator) sweepConsentsLocked() {
	now := e.clock.Now()
	for id, c := range e.st.consents {
		if !now.Before(c.expiresAt) {
			delete(e.st.consents, id)
		}
	}
}

type consentCompany struct {
	ID, Name, URN string
	Selected      bool
}

func (e *Emulator) renderConsent(w http.ResponseWriter, req *consentRequest, preselect *company) {
	data := struct {
		App       string
		ClientID  string
		Request   string
		Scopes    []scopeDescription
		Companies []consentCompany
		Redirect  string
	}{App: req.client.Name, ClientID: req.client.ID, Request: req.id, Scopes: describeScopes(req.scopes)}
	if u, err := url.Parse(req.redirectURI); err == nil {
		data.Redirect = u.Host
	}
	for i, co := range companies {
		sel := (preselect == nil && i == 0) || preselect == co
		data.Companies = append(data.Companies, consentCompany{co.ID, co.Name, co.URN(), sel})
	}
	setPageHeaders(w)
	w.WriteHeader(http.StatusOK)
	_ = pages.ExecuteTemplate(w, "consent.html", data)
}

// handleConsent serves POST /oauth/authorize/consent, the consent page's form.
func (e *Emulator) handleConsent(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e.errorPage(w, http.StatusMethodNotAllowed, "The consent form must be posted.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		e.errorPage(w, http.StatusBadRequest, "The consent form is malformed.")
		return
	}
	decision, co := r.PostForm.Get("decision"), companyByID(r.PostForm.Get("company"))
	id := r.PostForm.Get("request")
	e.mu.Lock()
	req := e.st.consents[id]
	now := e.clock.Now()
	// The request is spent only by a well-formed answer, so a form posted without a
	// decision or a company can be corrected and sent again.
	valid := decision == "deny" || (decision == "approve" && co != nil)
	if valid {
		delete(e.st.consents, id) // single-use
	}
	e.unlock()
	if req == nil || !now.Before(req.expiresAt) {
		e.errorPage(w, http.StatusBadRequest, "This consent request is unknown, expired or already answered. Start again from the application.")
		return
	}
	switch decision {
	case "approve":
		if co == nil {
			e.errorPage(w, http.StatusBadRequest, "Choose a company to connect.")
			return
		}
		e.approve(w, r, req, co)
	case "deny":
		e.mu.Lock()
		e.ledger.count(EndpointAuthorize, "access_denied")
		e.unlock()
		redirectWith(w, r, req.redirectURI, url.Values{
			"error": {"access_denied"}, "error_description": {"the user denied the request"}, "state": {req.state}})
	default:
		e.errorPage(w, http.StatusBadRequest, "Approve or deny the request.")
	}
}

// approve creates a new authorisation (a token family) and its code, and redirects.
// Every consent creates a new authorisation, even for a company already connected.
func (e *Emulator) approve(w http.ResponseWriter, r *http.Request, req *consentRequest, co *company) {
	if req.fault == FaultMissingCode {
		e.mu.Lock()
		e.ledger.count(EndpointAuthorize, "fault:"+FaultMissingCode)
		e.unlock()
		redirectWith(w, r, req.redirectURI, url.Values{"state": {req.state}})
		return
	}
	state := req.state
	if req.fault == FaultWrongState {
		state = "forged-" + randomString(12)
	}
	e.mu.Lock()
	if req.fault == FaultWrongState {
		e.ledger.count(EndpointAuthorize, "fault:"+FaultWrongState)
	}
	a := e.newAuthorisationLocked(req.client, co, req.scopes)
	code := &authCode{
		value: "pac_" + randomString(32), clientID: req.client.ID, redirectURI: req.redirectURI,
		challenge: req.challenge, auth: a, expiresAt: e.clock.Now().Add(e.cfg.CodeTTL),
	}
	code.forgedState = req.fault == FaultWrongState
	a.code = code
	e.st.codes[code.value] = code
	e.ledger.count(EndpointAuthorize, "ok")
	e.unlock()
	e.log.Info("consent approved", "authorisation", a.id, "client", req.client.ID, "subject", co.URN())
	redirectWith(w, r, req.redirectURI, url.Values{"code": {code.value}, "state": {state}})
}

// redirectWith adds params to uri's query, keeping the query it already has (RFC 6749
// §3.1.2), and redirects with 303 so a POSTed consent becomes a GET.
func redirectWith(w http.ResponseWriter, r *http.Request, uri string, params url.Values) {
	u, _ := url.Parse(uri) // validated at client registration
	q := u.Query()
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := params.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func (e *Emulator) errorPage(w http.ResponseWriter, status int, msg string) {
	e.mu.Lock()
	e.ledger.count(EndpointAuthorize, "error_page")
	e.unlock()
	setPageHeaders(w)
	w.WriteHeader(status)
	_ = pages.ExecuteTemplate(w, "error.html", struct{ Message string }{msg})
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type scopeDescription struct{ Scope, Text string }

var scopeTexts = map[string]string{
	"accounting-entries:read": "Read accounting entries",
	"accounts:read":           "Read your chart of accounts",
	"accounts:write":          "Change your chart of accounts",
	"export-items:read":       "Read exported expenses",
	"export-jobs:read":        "See export jobs",
	"export-jobs:write":       "Start export jobs",
	"test:test":               "Test access",
	"users:read":              "See the people in your company",
	"users:write":             "Change the people in your company",
}

func describeScopes(scopes []string) []scopeDescription {
	out := make([]scopeDescription, 0, len(scopes))
	for _, s := range scopes {
		text := scopeTexts[s]
		if text == "" {
			text = strings.ReplaceAll(s, ":", " ")
		}
		out = append(out, scopeDescription{s, text})
	}
	return out
}
