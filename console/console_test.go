package console

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/internal/roster"
	"pkiboard/internal/web"
	"pkiboard/wire"
)

// recorder is a Mux that remembers every pattern registered on it.
type recorder struct {
	Mux
	patterns []string
}

func (r *recorder) Handle(pattern string, h http.Handler) {
	r.patterns = append(r.patterns, pattern)
	r.Mux.Handle(pattern, h)
}

// server is a web.Server serving on loopback, and the audit it records.
type server struct {
	*web.Server
	base  string
	mu    sync.Mutex
	audit []string // "actor action detail"
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	srv, err := web.New(web.Options{Listen: "127.0.0.1:0", Audit: func(actor, action, detail string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.audit = append(s.audit, actor+" "+action+" "+detail)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.Server, s.base = srv, "http://"+srv.Addr().String()
	ctx, cancel := t.Context(), func() {}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); srv.Close(); <-done })
	return s
}

func (s *server) audited() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.audit...)
}

// client does requests without following redirects, with or without a
// session's cookie.
type client struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
	csrf   string
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}

// login opens a session as name through a login link.
func (s *server) login(t *testing.T, name string) *client {
	t.Helper()
	link, _, err := s.NewLoginLink(name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirect.PostForm(s.base+"/login", url.Values{"t": {u.Query().Get("t")}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := &client{t: t, base: s.base}
	for _, ck := range resp.Cookies() {
		if ck.Name == web.CookieName {
			c.cookie = ck
		}
	}
	if c.cookie == nil {
		t.Fatalf("login: %s, no session cookie", resp.Status)
	}
	// The CSRF token is on every page's logout form.
	_, body := c.do("GET", "/style.css", nil)
	_ = body
	_, page := c.do("GET", "/", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the index:\n%s", page)
	}
	c.csrf = m[1]
	return c
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// post posts form with the session's CSRF token.
func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	form.Set("csrf", c.csrf)
	return c.do("POST", path, form)
}

// labBoard opens a board store serving the lab, with a roster of two.
func labBoard(t *testing.T) BoardOptions {
	t.Helper()
	st, err := board.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return BoardOptions{
		Store:       st,
		Assignments: func() []board.Assignment { return []board.Assignment{board.LabAssignmentOf(1 << 20)} },
		Roster: func() ([]roster.Entry, error) {
			return []roster.Entry{{SID: "s01", Name: "Ada"}, {SID: "s02", Name: "Bo"}}, nil
		},
		Export: func(string, io.Writer) error { return nil },
	}
}

// testCA opens a CA (policy open) that has issued one student certificate.
func testCA(t *testing.T) (*ca.Authority, *x509.Certificate) {
	t.Helper()
	a, err := ca.Open(ca.Options{Dir: t.TempDir() + "/ca", Create: true, Subject: pkix.Name{CommonName: "test root"},
		Policy: ca.PolicyOpen, SIDPattern: regexp.MustCompile(`s[0-9]+`), BoardName: "board.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "s01"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := a.Enroll(t.Context(), ca.Request{Profile: wire.ProfileStudent, SID: "s01", CSR: csr,
		Root: keys.Fingerprint(a.Root()), Auth: wire.AuthNone, Peer: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return a, iss.Certificate
}

// concrete fills a pattern's wildcards with a sample value.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.TrimSuffix(path, "{$}")
	return method, regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllString(path, "x1")
}

// TestEveryRouteNeedsTheSession: without the session's cookie every page
// of both consoles, whatever its method, answers 401 and does nothing; with
// the cookie, a POST without the CSRF token answers 403; and with both the
// pages serve (so the 401s are the door's, not missing routes).
func TestEveryRouteNeedsTheSession(t *testing.T) {
	auth, _ := testCA(t)
	for _, tc := range []struct {
		name     string
		register func(Mux)
		minimum  int
	}{
		{"board", func(m Mux) { Board(m, labBoard(t)) }, 10},
		{"ca", func(m Mux) { CA(m, CAOptions{Authority: auth}) }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			rec := &recorder{Mux: s.Server}
			tc.register(rec)
			if len(rec.patterns) < tc.minimum {
				t.Fatalf("%d routes registered, want at least %d: %v", len(rec.patterns), tc.minimum, rec.patterns)
			}
			anon := &client{t: t, base: s.base}
			staff := s.login(t, "alice")
			for _, p := range rec.patterns {
				method, path := concrete(p)
				if resp, body := anon.do(method, path, url.Values{"sid": {"s01"}}); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "console-link") {
					t.Errorf("%s %s without the cookie: %s, want 401 with how to get a link", method, path, resp.Status)
				}
				if method == "POST" {
					if resp, _ := staff.do(method, path, url.Values{"sid": {"s01"}}); resp.StatusCode != http.StatusForbidden {
						t.Errorf("%s %s without the CSRF token: %s, want 403", method, path, resp.Status)
					}
				}
			}
			if got := s.audited(); len(got) != 0 && !strings.Contains(strings.Join(got, "\n"), "login") {
				t.Errorf("requests refused at the door were audited as actions: %v", got)
			}
			if resp, body := staff.do("GET", "/", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice") {
				t.Errorf("GET / with the session: %s\n%s", resp.Status, body)
			}
		})
	}
}

// TestBoardPages: the index counts the lab against the roster, an unknown
// assignment is 404, and an extension granted through the page is stored
// and audited under the session's name.
func TestBoardPages(t *testing.T) {
	s := newServer(t)
	o := labBoard(t)
	Board(s.Server, o)
	c := s.login(t, "alice")
	resp, body := c.do("GET", "/", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-count="missing">2<`) {
		t.Errorf("index: %s, want the lab with 2 missing:\n%s", resp.Status, body)
	}
	if resp, _ := c.do("GET", "/assignments/nope", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown assignment: %s, want 404", resp.Status)
	}
	// One student a page: the second page shows s02, and links back.
	resp, body = c.do("GET", "/assignments/lab?per=1&page=2", nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `data-sid="s01"`) || !strings.Contains(body, `data-sid="s02"`) ||
		!strings.Contains(body, `rel="prev" href="/assignments/lab?per=1&amp;sort=sid"`) || !strings.Contains(body, "2–2 of 2 students shown, page 2 of 2.") {
		t.Errorf("the lab's second page of one: %s, want s02 alone and a link back:\n%s", resp.Status, body)
	}
	resp, body = c.do("GET", "/assignments/lab?show=missing&q=ad", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-sid="s01"`) || strings.Contains(body, `data-sid="s02"`) {
		t.Errorf("the lab filtered on \"ad\": %s, want s01 (Ada) only:\n%s", resp.Status, body)
	}
	until := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	resp, _ = c.post("/assignments/lab/students/s02/extend", url.Values{"until": {until.Format(time.RFC3339)}, "reason": {"ill"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("extend: %s, want 303", resp.Status)
	}
	e, err := o.Store.Extension("lab", "s02")
	if err != nil || e == nil || !e.Until.Equal(until) || e.GrantedBy != "alice" {
		t.Errorf("the extension stored: %+v, %v; want until %s by alice", e, err, until)
	}
	log, err := o.Store.AuditLog()
	if err != nil || len(log) != 1 || log[0].Actor != "alice" || log[0].Action != "extend" {
		t.Errorf("the audit: %+v, %v; want alice's extend", log, err)
	}
	if resp, body := c.post("/assignments/lab/students/s02/extend", url.Values{"until": {"tomorrow"}, "reason": {"ill"}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "RFC 3339") {
		t.Errorf("extend until \"tomorrow\": %s, want 400 that says RFC 3339", resp.Status)
	}
	if resp, _ := c.post("/assignments/lab/students/s02/activate", url.Values{"version": {"1"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("activate a version she never submitted: %s, want 400", resp.Status)
	}
	resp, body = c.do("GET", "/assignments/lab/listing.csv", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") ||
		!strings.HasPrefix(body, "sid,name,on_roster,status") || strings.Count(body, "\n") != 3 {
		t.Errorf("listing.csv: %s %q\n%s", resp.Status, resp.Header.Get("Content-Disposition"), body)
	}
	if resp, _ := c.do("GET", "/submissions/000001/content", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown submission's download: %s, want 404", resp.Status)
	}
}

// TestCAPages: the certificates page finds by SID and status; revocation
// asks first, then revokes on the POST, audited before it is done under
// the session's name; tokens list without their secret and cancel.
func TestCAPages(t *testing.T) {
	s := newServer(t)
	auth, cert := testCA(t)
	CA(s.Server, CAOptions{Authority: auth})
	c := s.login(t, "bob")
	serial := keys.SerialHex(cert.SerialNumber)
	if resp, body := c.do("GET", "/?q=s01&status=valid", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-serial="`+serial+`"`) {
		t.Errorf("search s01 valid: %s\n%s", resp.Status, body)
	}
	if _, body := c.do("GET", "/?q=s99", nil); strings.Contains(body, `data-serial=`) {
		t.Errorf("search s99 found a certificate:\n%s", body)
	}
	resp, body := c.do("GET", "/certificates/"+serial+"/revoke", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `method="post"`) {
		t.Errorf("the confirmation: %s\n%s", resp.Status, body)
	}
	if rec, _, _ := auth.Certificate(cert.SerialNumber); rec.Status != ca.StatusValid {
		t.Fatalf("the confirmation page revoked the certificate: %s", rec.Status)
	}
	resp, _ = c.post("/certificates/"+serial+"/revoke", url.Values{"reason": {"1"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %s, want 303", resp.Status)
	}
	if rec, _, _ := auth.Certificate(cert.SerialNumber); rec.Status != ca.StatusRevoked || rec.Reason != ca.ReasonKeyCompromise {
		t.Errorf("after the revoke: %s reason %d", rec.Status, rec.Reason)
	}
	if got := strings.Join(s.audited(), "\n"); !strings.Contains(got, "bob revoke serial "+serial) {
		t.Errorf("the audit: %s; want bob's revoke of %s", got, serial)
	}
	if resp, _ := c.post("/certificates/"+serial+"/revoke", url.Values{"reason": {"1"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("revoke again: %s, want 400", resp.Status)
	}
	tok, _, err := auth.CreateToken("s02", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	resp, body = c.do("GET", "/tokens", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-sid="s02" data-state="unused"`) || strings.Contains(body, tok) {
		t.Errorf("tokens: %s; want s02's unused, without its secret\n%s", resp.Status, body)
	}
	if resp, _ := c.post("/tokens/cancel", url.Values{"sid": {"s02"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("cancel: %s, want 303", resp.Status)
	}
	if _, body := c.do("GET", "/tokens?all=1", nil); !strings.Contains(body, `data-sid="s02" data-state="cancelled"`) {
		t.Errorf("after the cancel:\n%s", body)
	}
	if got := strings.Join(s.audited(), "\n"); !strings.Contains(got, `bob tokens.cancel the unused tokens of SID "s02"`) {
		t.Errorf("the audit: %s; want bob's cancel", got)
	}
}

// TestEveryInputHasALabel: on every page the tests render, each visible
// input and select has an id that a label names.
func TestEveryInputHasALabel(t *testing.T) {
	for _, name := range []string{"board_assignment.html", "board_student.html", "ca_certs.html", "ca_revoke.html", "ca_tokens.html"} {
		data, err := files.ReadFile("templates/" + name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, m := range regexp.MustCompile(`<(input|select)\b[^>]*>`).FindAllString(text, -1) {
			if strings.Contains(m, `type="hidden"`) {
				continue
			}
			id := regexp.MustCompile(`\bid="([^"]+)"`).FindStringSubmatch(m)
			if id == nil || !strings.Contains(text, `<label for="`+id[1]+`"`) {
				t.Errorf("%s: %s has no label", name, m)
			}
		}
	}
}
