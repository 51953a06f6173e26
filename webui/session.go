package webui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// A dashboard session is stateless: the cookie holds the admin key's id,
// the first bytes of the key's stored hash, an expiry and the session's
// CSRF secret, sealed by Config.Sealer (an AEAD, so it can be neither read
// nor altered, and any replica holding the keyset opens it). Every request
// re-reads the key's record: a revoked key, or a key whose scopes no longer
// include admin, ends its sessions at once. Logging out clears the cookie;
// a copy of the cookie taken before stays valid until it expires or the
// key is revoked, which is the price of keeping nothing on the server.
const (
	sessionCookie = "tokenkeeper_ui"
	loginCookie   = "tokenkeeper_ui_login"
	csrfField     = "csrf"
	// maxFormBytes bounds a dashboard form's body.
	maxFormBytes = 16 << 10
)

// sessionAD binds the sealed cookie to its use: a sealed token or a flow's
// verifier never opens as a session, nor a session as either.
var sessionAD = tokenkeeper.AssociatedData("webui", "session", "v1")

type session struct {
	keyID   tokenkeeper.APIKeyID
	keyName string // from the record, read on each request
	expires time.Time
	fp      [8]byte // the first bytes of the key's stored SHA-256
	csrf    [32]byte
}

// csrfToken is the value every form of this session carries.
func (s *session) csrfToken() string { return base64.RawURLEncoding.EncodeToString(s.csrf[:]) }

// seal returns the cookie value of sess.
func (s *Server) seal(sess *session) (string, error) {
	b := make([]byte, 0, 1+8+8+32+len(sess.keyID))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(sess.expires.Unix()))
	b = append(b, sess.fp[:]...)
	b = append(b, sess.csrf[:]...)
	b = append(b, sess.keyID...)
	sealed, err := s.cfg.Sealer.Seal(b, sessionAD)
	if err != nil {
		return "", err
	}
	return url.PathEscape(sealed.KeyID) + "." + base64.RawURLEncoding.EncodeToString(sealed.Ciphertext), nil
}

// open returns the session in value, or nil if it is not one this
// service sealed, or has expired.
func (s *Server) open(value string) *session {
	kid, ct, ok := strings.Cut(value, ".")
	if !ok {
		return nil
	}
	keyID, err := url.PathUnescape(kid)
	if err != nil {
		return nil
	}
	c, err := base64.RawURLEncoding.DecodeString(ct)
	if err != nil {
		return nil
	}
	b, err := s.cfg.Sealer.Open(tokenkeeper.Sealed{KeyID: keyID, Ciphertext: c}, sessionAD)
	if err != nil || len(b) < 1+8+8+32+1 || b[0] != 1 {
		return nil
	}
	sess := &session{expires: time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0)}
	copy(sess.fp[:], b[9:17])
	copy(sess.csrf[:], b[17:49])
	sess.keyID = tokenkeeper.APIKeyID(b[49:])
	if !s.cfg.Now().Before(sess.expires) {
		return nil
	}
	return sess
}

// current returns the request's session, checked against the key's record:
// nil (and no error) when there is none that is valid. An error means the
// key store failed.
func (s *Server) current(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	sess := s.open(c.Value)
	if sess == nil {
		return nil, nil
	}
	rec, err := s.cfg.APIKeys.GetAPIKey(r.Context(), sess.keyID)
	switch {
	case tokenkeeper.ErrorCode(err) == tokenkeeper.CodeNotFound:
		return nil, nil
	case err != nil:
		return nil, err
	case len(rec.Hash) < 8 || subtle.ConstantTimeCompare(rec.Hash[:8], sess.fp[:]) != 1:
		return nil, nil
	case !rec.Allows(tokenkeeper.ScopeAdmin): // revoked, or no longer admin
		return nil, nil
	}
	sess.keyName = rec.Name
	return sess, nil
}

// newSession starts a session for the admin key rec.
func (s *Server) newSession(rec *tokenkeeper.APIKey) *session {
	sess := &session{keyID: rec.ID, keyName: rec.Name, expires: s.cfg.Now().Add(s.cfg.SessionTTL)}
	copy(sess.fp[:], rec.Hash)
	_, _ = rand.Read(sess.csrf[:])
	return sess
}

// cookie returns a dashboard cookie: HttpOnly, SameSite=Strict (a link
// from another site arrives without it, and so does any cross-site form),
// Secure when the service is public over https or this request came over
// TLS.
func (s *Server) cookie(r *http.Request, name, value, path string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true,
		Secure: s.secure || r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// authed wraps a handler that needs a session. Without a valid one the
// browser goes to the login page (the request does nothing). A POST must
// also carry the session's CSRF token in its form, and come from this
// origin when the browser says where it comes from; otherwise 403.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, sess *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		sess, err := s.current(r)
		if err != nil {
			s.log.ErrorContext(r.Context(), "webui: read the session's API key", "error", err)
			s.fail(w, r, nil, http.StatusServiceUnavailable, "The key store is unavailable", "Wait a moment, then reload the page.")
			return
		}
		if sess == nil {
			if _, err := r.Cookie(sessionCookie); err == nil {
				http.SetCookie(w, s.cookie(r, sessionCookie, "", s.base, -1))
			}
			next := ""
			if r.Method == http.MethodGet {
				next = "?next=" + url.QueryEscape(strings.TrimPrefix(r.URL.RequestURI(), "/ui"))
			}
			s.redirect(w, r, "/login"+next)
			return
		}
		if r.Method == http.MethodPost && !s.checkForm(w, r, sess.csrfToken()) {
			s.fail(w, r, sess, http.StatusForbidden, "This form has expired",
				"The form was not sent from this dashboard, or the page is too old. Go back, reload the page, and try again.")
			return
		}
		h(w, r, sess)
	}
}

// checkForm parses a POST's form and reports whether its CSRF field equals
// want, in constant time, and the browser's Origin and Sec-Fetch-Site (when
// sent) say it comes from this origin.
func (s *Server) checkForm(w http.ResponseWriter, r *http.Request, want string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && !s.sameOrigin(r, o) {
		return false
	}
	got := r.PostForm.Get(csrfField)
	return want != "" && len(r.PostForm[csrfField]) == 1 && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin reports whether origin is PublicURL's, or the request's own
// host (a service reached directly, behind no proxy).
func (s *Server) sameOrigin(r *http.Request, origin string) bool {
	pub := s.cfg.PublicURL.Scheme + "://" + s.cfg.PublicURL.Host
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, pub) || strings.EqualFold(origin, scheme+"://"+r.Host)
}
