package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Sizes of the door's secrets and tables.
const (
	// SecretBytes is the size of a login token, a session ID and a CSRF
	// token: 256 bits from crypto/rand.
	SecretBytes = 32
	// MaxNameBytes bounds the name a login link is bound to.
	MaxNameBytes = 64
	maxLinks     = 64  // login links outstanding at once
	maxSessions  = 256 // sessions open at once; a new one drops the oldest
	// CookieName is the session cookie's name.
	CookieName = "pkiboard_session"
)

// ErrTooManyLinks is NewLoginLink's error when maxLinks links wait unused.
var ErrTooManyLinks = errors.New("web: too many login links wait unused; let some expire (10 minutes)")

// A link is a login link waiting for its use.
type link struct {
	name    string
	expires time.Time
}

// A session is an open console session.
type session struct {
	srv     *Server
	name    string
	csrf    string
	expires time.Time
}

// secrets is a small table of values found by a secret that the table keeps
// only the SHA-256 of. A lookup compares the hash with every entry's in
// constant time, so its timing tells nothing about which entry, or how much
// of one, matched. Its owner locks it.
type secrets[T any] struct {
	max     int
	entries []secretEntry[T]
}

type secretEntry[T any] struct {
	sum     [sha256.Size]byte
	expires time.Time
	v       T
}

// find returns the index of the unexpired entry whose secret is secret, or -1.
func (t *secrets[T]) find(secret string, now time.Time) int {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].sum[:])
		if eq == 1 && now.Before(t.entries[i].expires) {
			found = i
		}
	}
	return found
}

// expire drops the entries expired at now.
func (t *secrets[T]) expire(now time.Time) {
	kept := t.entries[:0]
	for _, e := range t.entries {
		if now.Before(e.expires) {
			kept = append(kept, e)
		}
	}
	clear(t.entries[len(kept):])
	t.entries = kept
}

// remove drops entry i.
func (t *secrets[T]) remove(i int) {
	last := len(t.entries) - 1
	t.entries[i] = t.entries[last]
	t.entries[last] = secretEntry[T]{}
	t.entries = t.entries[:last]
}

// add keeps v under the SHA-256 of secret until expires.
func (t *secrets[T]) add(secret string, expires time.Time, v T) {
	t.entries = append(t.entries, secretEntry[T]{sum: sha256.Sum256([]byte(secret)), expires: expires, v: v})
}

// newSecret returns SecretBytes from crypto/rand, base64url without padding.
func newSecret() string {
	b := make([]byte, SecretBytes)
	rand.Read(b) // never fails (crypto/rand, Go 1.24 on)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CheckName reports whether name may be a staff name: 1 to MaxNameBytes
// bytes of printable UTF-8 without control characters.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("web: the name is empty: say who the link is for (--as NAME)")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("web: the name is %d bytes, more than %d", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return errors.New("web: the name is not UTF-8")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("web: the name holds the unprintable character %U", r)
		}
	}
	return nil
}

// NewLoginLink returns a one-time login link for name, valid for LinkTTL:
// its token is SecretBytes from crypto/rand, and the Server keeps only its
// SHA-256. Neither the link nor its token is logged.
func (s *Server) NewLoginLink(name string) (string, time.Time, error) {
	if err := CheckName(name); err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	expires := now.Add(LinkTTL)
	token := newSecret()
	s.doorMu.Lock()
	s.links.expire(now)
	if len(s.links.entries) >= s.links.max {
		s.doorMu.Unlock()
		return "", time.Time{}, ErrTooManyLinks
	}
	s.links.add(token, expires, link{name: name, expires: expires})
	s.doorMu.Unlock()
	s.log.Info("console login link issued", zap.String("staff", name), zap.Time("expires", expires))
	if err := s.recordAudit("operator", "console.link", "login link for "+name+" until "+expires.UTC().Format(time.RFC3339)); err != nil {
		s.doorMu.Lock()
		if i := s.links.find(token, now); i >= 0 {
			s.links.remove(i)
		}
		s.doorMu.Unlock()
		return "", time.Time{}, err
	}
	return s.baseURL + "/login?" + url.Values{"t": {token}}.Encode(), expires, nil
}

// recordAudit records an action, or fails when there is nowhere to record it.
func (s *Server) recordAudit(actor, action, detail string) error {
	if s.audit == nil {
		return errors.New("web: this daemon has no audit to record staff actions in")
	}
	if err := s.audit(actor, action, detail); err != nil {
		return fmt.Errorf("web: audit: %w", err)
	}
	return nil
}

// peekLink reports whether token is a login link that may still be used,
// without using it.
func (s *Server) peekLink(token string) bool {
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	return s.links.find(token, s.now()) >= 0
}

// spendLink uses the login link of token once: it returns the name the link
// is bound to, and forgets the link.
func (s *Server) spendLink(token string) (string, bool) {
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	i := s.links.find(token, s.now())
	if i < 0 {
		return "", false
	}
	name := s.links.entries[i].v.name
	s.links.remove(i)
	return name, true
}

// newSession opens a session for name and returns its ID (the cookie's
// value), which the Server keeps only the SHA-256 of.
func (s *Server) newSession(name string) (string, *session) {
	now := s.now()
	id := newSecret()
	ss := &session{srv: s, name: name, csrf: newSecret(), expires: now.Add(s.ttl)}
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	s.sessions.expire(now)
	if len(s.sessions.entries) >= s.sessions.max {
		oldest := 0
		for i, e := range s.sessions.entries {
			if e.expires.Before(s.sessions.entries[oldest].expires) {
				oldest = i
			}
		}
		s.sessions.remove(oldest)
	}
	s.sessions.add(id, ss.expires, ss)
	return id, ss
}

// sessionOf returns r's open session, or nil.
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	i := s.sessions.find(c.Value, s.now())
	if i < 0 {
		return nil
	}
	return s.sessions.entries[i].v
}

// endSession closes r's session.
func (s *Server) endSession(r *http.Request) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return
	}
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	if i := s.sessions.find(c.Value, s.now()); i >= 0 {
		s.sessions.remove(i)
	}
}

// cookie returns the session cookie carrying value for maxAge seconds (a
// negative maxAge deletes it).
func (s *Server) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.tls,
		SameSite: http.SameSiteStrictMode,
	}
}

// loginPage answers a login link opened in a browser with a page whose
// button uses it (POST /login). A GET does not spend the link: mail
// scanners and browsers' prefetch open links, and must not log anyone in
// or burn the link before its owner clicks.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("t")
	if token == "" || !s.peekLink(token) {
		s.deny(w, http.StatusUnauthorized, "This login link is unknown, already used or expired.")
		return
	}
	page(w, http.StatusOK, loginTmpl, struct{ Token string }{token})
}

// login spends a login link and opens a session: the cookie, then a
// redirect to the console's index.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	token := r.PostFormValue("t")
	name, ok := s.spendLink(token)
	if token == "" || !ok {
		s.deny(w, http.StatusUnauthorized, "This login link is unknown, already used or expired.")
		return
	}
	id, ss := s.newSession(name)
	if err := s.recordAudit(name, "console.login", "session until "+ss.expires.UTC().Format(time.RFC3339)+" from "+r.RemoteAddr); err != nil {
		s.log.Error("console login refused: cannot record it in the audit", zap.String("staff", name), zap.Error(err))
		s.endSessionID(id)
		s.deny(w, http.StatusInternalServerError, "The login could not be recorded in the audit, so it was refused. See the daemon's log.")
		return
	}
	s.log.Info("console login", zap.String("staff", name), zap.String("peer", r.RemoteAddr), zap.Time("expires", ss.expires))
	http.SetCookie(w, s.cookie(id, int(s.ttl/time.Second)))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) endSessionID(id string) {
	s.doorMu.Lock()
	defer s.doorMu.Unlock()
	if i := s.sessions.find(id, s.now()); i >= 0 {
		s.sessions.remove(i)
	}
}

// logout closes the session (its CSRF token checked by console).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	name := Staff(r)
	s.endSession(r)
	if err := s.recordAudit(name, "console.logout", ""); err != nil {
		s.log.Warn("console logout not recorded in the audit", zap.String("staff", name), zap.Error(err))
	}
	s.log.Info("console logout", zap.String("staff", name))
	http.SetCookie(w, s.cookie("", -1))
	page(w, http.StatusOK, messageTmpl, message{Title: "Logged out", Text: "The session is closed."})
}

// ctxKey keys the session in a console request's context.
type ctxKey struct{}

// console wraps a console page: the session's cookie is required (401
// otherwise), the body is bounded, and a state-changing method needs the
// session's CSRF token, compared in constant time (403 otherwise).
func (s *Server) console(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessionOf(r)
		if ss == nil {
			s.deny(w, http.StatusUnauthorized, "")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 {
				s.log.Warn("console request refused: no valid CSRF token", zap.String("staff", ss.name),
					zap.String("method", r.Method), zap.String("path", r.URL.Path))
				s.deny(w, http.StatusForbidden, "This request carried no valid CSRF token. Reload the page and try again.")
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)))
	})
}

// Staff returns the name the request's session was opened under; "" outside
// a console page.
func Staff(r *http.Request) string {
	if ss, ok := r.Context().Value(ctxKey{}).(*session); ok {
		return ss.name
	}
	return ""
}

// CSRFToken returns the request's session's CSRF token, for forms:
// <input type=hidden name=csrf value=...>. "" outside a console page.
func CSRFToken(r *http.Request) string {
	if ss, ok := r.Context().Value(ctxKey{}).(*session); ok {
		return ss.csrf
	}
	return ""
}

// Audit records action and detail under the request's staff name. It fails
// outside a console page and when the daemon cannot record it; a page then
// refuses the action.
func Audit(r *http.Request, action, detail string) error {
	ss, ok := r.Context().Value(ctxKey{}).(*session)
	if !ok {
		return errors.New("web: audit outside a console session")
	}
	return ss.srv.recordAudit(ss.name, action, detail)
}

// headers sets the security headers of every answer.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// deny answers code with a short page; for 401 it says how to get a link.
func (s *Server) deny(w http.ResponseWriter, code int, text string) {
	m := message{Title: http.StatusText(code), Text: text}
	if code == http.StatusUnauthorized {
		m.Title = "Login needed"
		m.HowTo = true
	}
	page(w, code, messageTmpl, m)
}

type message struct {
	Title, Text string
	HowTo       bool
}

func page(w http.ResponseWriter, code int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	t.Execute(w, data)
}

var messageTmpl = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} — pkiboard</title></head>
<body><h1>{{.Title}}</h1>{{with .Text}}<p>{{.}}</p>{{end}}
{{if .HowTo}}<p>The console needs a login link. On the daemon's machine, run</p>
<pre>pkiboard console-link --role board --as YOUR-NAME</pre>
<p>(or <code>--role ca</code> for the CA) and open the link it prints within 10 minutes; it works once.</p>{{end}}
</body></html>
`))

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in — pkiboard</title></head>
<body><h1>pkiboard console</h1>
<form method="post" action="/login"><input type="hidden" name="t" value="{{.Token}}">
<button type="submit">Log in</button></form>
<p>The link works once and for 10 minutes.</p>
</body></html>
`))
