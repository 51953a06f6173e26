package emulator

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const maxAPIBodyBytes = 64 << 10

func (e *Emulator) routeAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/introspect", e.api("", e.apiIntrospect))
	mux.HandleFunc("GET /v2/employees", e.api("users:read", e.apiEmployees))
	mux.HandleFunc("GET /v1/export-jobs", e.api("export-jobs:read", e.apiListExportJobs))
	mux.HandleFunc("POST /v1/export-jobs", e.api("export-jobs:write", e.apiCreateExportJob))
	mux.HandleFunc("GET /v1/export-jobs/{id}", e.api("export-jobs:read", e.apiGetExportJob))
	mux.HandleFunc("GET /v1/installations/me", e.api("", e.apiGetInstallation))
	mux.HandleFunc("DELETE /v1/installations/me", e.api("", e.apiDeleteInstallation))
}

// apiCall is what an authenticated API handler gets. Handlers run with e.mu held, so
// they see one consistent state; they must not block.
type apiCall struct {
	token *token
	auth  *authorisation
	now   time.Time
	r     *http.Request
	body  []byte
}

type apiResult struct {
	status int
	body   any // nil for no body
}

func apiErr(status int, typ, msg string) apiResult {
	return apiResult{status, map[string]string{"type": typ, "message": msg}}
}

// api wraps a handler with bearer authentication (RFC 6750), stale-token detection, the
// scope check, fault injection and the ledger.
func (e *Emulator) api(scope string, h func(*apiCall) apiResult) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("access_token") {
			// RFC 6750 §2 allows one method per request, and Pleo allows only the header:
			// a token in a URL ends up in logs and histories.
			e.countAPI("invalid_request")
			writeJSON(w, http.StatusBadRequest, map[string]string{"type": "invalid_request",
				"message": "send the access token in the Authorization header, never in the query string"})
			return
		}
		bearer, hasBearer := bearerToken(r.Header.Get("Authorization"))

		e.mu.Lock()
		now := e.clock.Now()
		t, problem := e.checkAccessLocked(bearer, now)
		// A Retry-After applies to the request it answered, not to every call made with
		// the same token: a client may go on with other work meanwhile.
		retryKey := ""
		if t != nil {
			retryKey = "api:" + t.auth.id + " " + r.Method + " " + r.URL.RequestURI()
			e.ledger.checkRetry(retryKey, t.auth.id, now)
		}
		e.unlock()

		d := e.faults.pick(EndpointAPI)
		authID := ""
		if t != nil {
			authID = t.auth.id
		}
		if e.applyBefore(w, d, EndpointAPI, retryKey, authID, false) {
			return
		}
		if problem != "" || !hasBearer {
			e.unauthorized(w, hasBearer, problem)
			e.toldDead(r, t)
			return
		}
		if scope != "" {
			if _, ok := subsetOf([]string{scope}, t.scopes); !ok {
				e.countAPI("insufficient_scope")
				w.Header().Set("WWW-Authenticate", `Bearer realm="pleo-emulator", error="insufficient_scope", scope="`+scope+`"`)
				writeJSON(w, http.StatusForbidden, map[string]string{"type": "insufficient_scope", "message": "this call needs the scope " + scope})
				return
			}
		}
		// The body is read only after authentication: an unauthenticated caller gets 401,
		// whatever it sent.
		var body []byte
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			b, err := readBounded(w, r, maxAPIBodyBytes)
			if err != nil {
				e.countAPI("invalid_request")
				writeJSON(w, http.StatusBadRequest, map[string]string{"type": "invalid_request", "message": err.Error()})
				return
			}
			body = b
		}
		e.mu.Lock()
		now = e.clock.Now()
		if reason := deadReason(t, now); reason != "" || e.st.tokens[bearer] != t {
			if reason == "" {
				reason = "unknown token" // a reset forgot it while the request waited
			}
			// The token died while the request waited (an injected latency): the server
			// checks it when it processes the request. The client sent it alive, so this
			// is no violation.
			e.unlock()
			e.unauthorized(w, true, reason)
			e.toldDead(r, t)
			return
		}
		res := h(&apiCall{token: t, auth: t.auth, now: now, r: r, body: body})
		e.ledger.count(EndpointAPI, outcomeOf(res.status))
		e.unlock()
		if e.applyAfter(w, d, EndpointAPI, false) {
			return
		}
		if res.body == nil {
			w.WriteHeader(res.status)
			return
		}
		writeJSON(w, res.status, res.body)
	}
}

// toldDead records that a 401 for t was handed to the client, unless the client has gone
// (r's context is cancelled when it closes the connection). From then on, using t again
// is the client's own doing, even if it never saw the rotation that superseded t. t may be
// nil (the token is unknown).
func (e *Emulator) toldDead(r *http.Request, t *token) {
	if t == nil || r.Context().Err() != nil {
		return
	}
	e.mu.Lock()
	t.rotationLost = false
	e.unlock()
}

// unauthorized answers 401 with an RFC 6750 §3 challenge. Without credentials the
// challenge carries no error code (§3.1).
func (e *Emulator) unauthorized(w http.ResponseWriter, hadToken bool, problem string) {
	e.countAPI("invalid_token")
	challenge := `Bearer realm="pleo-emulator"`
	if hadToken {
		challenge += `, error="invalid_token", error_description="` + problem + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"type": "invalid_token", "message": "the access token is missing, expired or revoked"})
}

func outcomeOf(status int) string {
	if status < 300 {
		return "ok"
	}
	return strconv.Itoa(status)
}

func (e *Emulator) countAPI(outcome string) {
	e.mu.Lock()
	e.ledger.count(EndpointAPI, outcome)
	e.unlock()
}

// checkAccessLocked finds the access token and says what is wrong with it, if anything.
// Using a superseded or expired token is the client's fault and a stale_access_token
// violation; a token revoked with its authorisation is not (the client could not know).
func (e *Emulator) checkAccessLocked(bearer string, now time.Time) (*token, string) {
	if bearer == "" {
		return nil, "missing"
	}
	t := e.st.tokens[bearer]
	if t == nil || t.kind != accessToken {
		return nil, "unknown token"
	}
	reason := deadReason(t, now)
	switch reason {
	case "superseded by a refresh":
		e.ledger.violateFlagged(t.rotationLost, RuleStaleAccessToken, t.auth.id, now,
			"API called with the access token of generation "+itoa(t.generation)+", superseded by a refresh (current generation "+itoa(t.auth.refreshes)+")")
	case "expired":
		e.ledger.violate(RuleStaleAccessToken, t.auth.id, now,
			"API called with an access token that expired "+now.Sub(t.expiresAt).Round(time.Millisecond).String()+" ago")
	}
	return t, reason
}

// deadReason says why an access token is no longer valid at now, or "" if it is.
func deadReason(t *token, now time.Time) string {
	switch {
	case t.status == tokenRotated:
		return "superseded by a refresh"
	case !now.Before(t.expiresAt):
		return "expired"
	case t.status == tokenRevoked || t.auth.state == AuthorisationRevoked:
		return "revoked"
	}
	return ""
}

func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func readBounded(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errors.New("the request body is larger than " + strconv.FormatInt(limit, 10) + " bytes")
	}
	return b, err
}

func (e *Emulator) apiIntrospect(c *apiCall) apiResult {
	return apiResult{http.StatusOK, map[string]any{
		"authMethod":      "OAUTH2",
		"clientId":        c.auth.clientID,
		"scope":           strings.Join(c.token.scopes, " "),
		"applicationName": e.clients[c.auth.clientID].displayName(c.auth.clientID),
		"subjectURN":      c.auth.company.URN(),
	}}
}

func (c *Client) displayName(fallback string) string {
	if c == nil {
		return fallback // the client was removed by a reset after the token was issued
	}
	return c.Name
}

// apiEmployees serves GET /v2/employees with cursor pagination: limit (1-100, default
// 10) and after (the endCursor of the previous page).
func (e *Emulator) apiEmployees(c *apiCall) apiResult {
	q := c.r.URL.Query()
	limit := 10
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return apiErr(http.StatusBadRequest, "invalid_request", "limit must be an integer from 1 to 100")
		}
		limit = n
	}
	all := c.auth.company.Employees
	start := 0
	if s := q.Get("after"); s != "" {
		n, ok := decodeCursor(s)
		if !ok || n < 0 || n >= len(all) {
			return apiErr(http.StatusBadRequest, "invalid_request", "after is not a valid cursor")
		}
		start = n + 1
	}
	end := min(start+limit, len(all))
	page := all[start:end]
	pagination := map[string]any{
		"hasPreviousPage": start > 0,
		"hasNextPage":     end < len(all),
		"total":           len(all),
	}
	if len(page) > 0 {
		pagination["startCursor"] = encodeCursor(start)
		pagination["endCursor"] = encodeCursor(end - 1)
	}
	return apiResult{http.StatusOK, map[string]any{"data": page, "pagination": pagination}}
}

func encodeCursor(i int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("idx:" + strconv.Itoa(i)))
}

func decodeCursor(s string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), "idx:") {
		return 0, false
	}
	n, err := strconv.Atoi(string(b[4:]))
	return n, err == nil
}

func (e *Emulator) apiListExportJobs(c *apiCall) apiResult {
	jobs := e.st.jobs[c.auth.company.ID]
	out := make([]exportJob, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, *j)
	}
	return apiResult{http.StatusOK, map[string]any{"data": out}}
}

func (e *Emulator) apiGetExportJob(c *apiCall) apiResult {
	id := c.r.PathValue("id")
	for _, j := range e.st.jobs[c.auth.company.ID] {
		if j.ID == id {
			return apiResult{http.StatusOK, map[string]any{"data": *j}}
		}
	}
	return apiErr(http.StatusNotFound, "not_found", "no export job "+strconv.Quote(id))
}

// apiCreateExportJob serves POST /v1/export-jobs with an optional {"from", "to"} period
// (YYYY-MM-DD). The job is created at once, so a drop_after_commit fault leaves it behind.
func (e *Emulator) apiCreateExportJob(c *apiCall) apiResult {
	var req struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	if len(strings.TrimSpace(string(c.body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(c.body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			return apiErr(http.StatusBadRequest, "invalid_request", "the body must be a JSON object with optional from and to dates")
		}
	}
	for _, d := range []string{req.From, req.To} {
		if d == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return apiErr(http.StatusBadRequest, "invalid_request", "dates must be YYYY-MM-DD")
		}
	}
	if req.From != "" && req.To != "" && req.To < req.From {
		return apiErr(http.StatusBadRequest, "invalid_request", "to is before from")
	}
	job := &exportJob{
		ID:        newUUID(),
		CompanyID: c.auth.company.ID, Status: "pending", From: req.From, To: req.To, CreatedAt: c.now,
	}
	e.st.jobs[job.CompanyID] = append(e.st.jobs[job.CompanyID], job)
	return apiResult{http.StatusCreated, map[string]any{"data": *job}}
}

func (e *Emulator) apiGetInstallation(c *apiCall) apiResult {
	a := c.auth
	return apiResult{http.StatusOK, map[string]any{
		"id":        "inst_" + strings.TrimPrefix(a.id, "auth_"),
		"status":    a.installationStatus,
		"clientId":  a.clientID,
		"companyId": a.company.ID,
		"createdAt": a.createdAt,
	}}
}

// apiDeleteInstallation serves DELETE /v1/installations/me: it deletes the installation and
// revokes every access and refresh token of this client for this subject (204), or 404 if
// nothing was left to revoke.
func (e *Emulator) apiDeleteInstallation(c *apiCall) apiResult {
	n := 0
	for _, a := range e.st.order {
		if a.clientID == c.auth.clientID && a.company == c.auth.company && a.state != AuthorisationRevoked {
			e.revokeLocked(a, RevokedInstallationDeleted, c.now)
			n++
		}
	}
	if n == 0 {
		return apiErr(http.StatusNotFound, "not_found", "no installation")
	}
	return apiResult{status: http.StatusNoContent}
}
