package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"pkiboard/internal/testcert"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// auditLog records what the server audits.
type auditLog struct {
	mu    sync.Mutex
	lines []string
	fail  error
}

func (a *auditLog) record(actor, action, detail string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	a.lines = append(a.lines, actor+" "+action)
	return nil
}

func (a *auditLog) has(line string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.lines {
		if l == line {
			return true
		}
	}
	return false
}

type fixture struct {
	srv   *Server
	clk   *clock
	audit *auditLog
	base  string
}

// start runs a Server on 127.0.0.1 with one console page at "/" (which says
// who is logged in and echoes the audit's result) and "POST /act".
func start(t *testing.T, o Options) *fixture {
	t.Helper()
	f := &fixture{clk: &clock{t: time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)}, audit: &auditLog{}}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	o.Now = f.clk.now
	o.Audit = f.audit.record
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "staff="+Staff(r)+" csrf="+CSRFToken(r))
	}))
	srv.Handle("POST /act", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Audit(r, "act", r.PostFormValue("what")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "done by "+Staff(r))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	f.srv = srv
	f.base = "http://" + srv.Addr().String()
	return f
}

// client returns an HTTP client with a cookie jar that does not follow
// redirects.
func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login opens a session for name with c and returns the session's CSRF token.
func (f *fixture) login(t *testing.T, c *http.Client, name string) string {
	t.Helper()
	link, _, err := f.srv.NewLoginLink(name)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, c, "POST", f.base+"/login", url.Values{"t": {tokenOf(t, link)}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: got %s to %q, want 303 to /", resp.Status, resp.Header.Get("Location"))
	}
	_, body := do(t, c, "GET", f.base+"/", nil, nil)
	_, csrf, _ := strings.Cut(body, "csrf=")
	return csrf
}

func tokenOf(t *testing.T, link string) string {
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("t")
}

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		addr, cert, key string
		ok              bool
	}{
		{"127.0.0.1:8003", "", "", true},
		{"[::1]:8003", "", "", true},
		{"localhost:8003", "", "", true},
		{"0.0.0.0:8003", "", "", false},
		{":8003", "", "", false},
		{"192.0.2.1:8003", "", "", false},
		{"board.example:8003", "", "", false},
		{"0.0.0.0:8003", "c.pem", "k.pem", true},
		{"127.0.0.1:8003", "c.pem", "", false},
		{"127.0.0.1", "", "", false},
	} {
		err := CheckListen(tc.addr, tc.cert, tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("CheckListen(%q, %q, %q) = %v, want ok %v", tc.addr, tc.cert, tc.key, err, tc.ok)
		}
	}
	// New checks too, before it binds anything.
	if _, err := New(Options{Listen: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("New on 0.0.0.0 without TLS: got %v, want the loopback refusal", err)
	}
}

func TestOpenRoutesAndHeaders(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pkiboard_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	f := start(t, Options{Registry: reg})
	hc := client(t)

	resp, body := do(t, hc, "GET", f.base+"/healthz", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != `{"status":"ok"}` {
		t.Errorf("/healthz: got %s %q", resp.Status, body)
	}
	resp, body = do(t, hc, "GET", f.base+"/metrics", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: got %s", resp.Status)
	}
	var p expfmt.TextParser = expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	if got := fams["pkiboard_test_total"].GetMetric()[0].GetCounter().GetValue(); got != 3 {
		t.Errorf("pkiboard_test_total: got %v want 3", got)
	}
	for _, path := range []string{"/healthz", "/login?t=x", "/"} {
		resp, _ := do(t, hc, "GET", f.base+path, nil, nil)
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"X-Frame-Options":        "DENY",
			"Cache-Control":          "no-store",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s: got %q want %q", path, k, got, want)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q lacks default-src 'self'", path, csp)
		}
	}
}

func TestReadyz(t *testing.T) {
	var crlErr error
	var mu sync.Mutex
	f := start(t, Options{Ready: []Check{
		{"store", func(context.Context) error { return nil }},
		{"crl", func(context.Context) error { mu.Lock(); defer mu.Unlock(); return crlErr }},
		{"slow", func(ctx context.Context) error { return nil }},
	}})
	hc := client(t)
	type answer struct {
		Status string
		Failed []string
		Checks []checkResult
	}
	get := func() (int, answer) {
		resp, body := do(t, hc, "GET", f.base+"/readyz", nil, nil)
		var a answer
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		return resp.StatusCode, a
	}
	if code, a := get(); code != 200 || a.Status != "ok" || len(a.Checks) != 3 {
		t.Errorf("ready: got %d %+v", code, a)
	}
	mu.Lock()
	crlErr = errors.New("the CRL is stale")
	mu.Unlock()
	code, a := get()
	if code != 503 || a.Status != "failing" || len(a.Failed) != 1 || a.Failed[0] != "crl" || a.Checks[1].Error != "the CRL is stale" {
		t.Errorf("stale CRL: got %d %+v, want 503 naming crl and why", code, a)
	}
}

func TestReadyzTimeout(t *testing.T) {
	f := start(t, Options{Ready: []Check{
		{"stuck", func(ctx context.Context) error { <-ctx.Done(); time.Sleep(10 * time.Millisecond); return nil }},
	}})
	resp, body := do(t, client(t), "GET", f.base+"/readyz", nil, nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "no answer within") {
		t.Errorf("stuck check: got %s %s", resp.Status, body)
	}
}

func TestConsoleNeedsSession(t *testing.T) {
	f := start(t, Options{})
	hc := client(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/"}, {"POST", "/act"}, {"POST", "/logout"},
	} {
		resp, body := do(t, hc, tc.method, f.base+tc.path, url.Values{}, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "pkiboard console-link --role") {
			t.Errorf("%s %s without a cookie: got %s, want 401 saying how to get a link", tc.method, tc.path, resp.Status)
		}
	}
	// A made-up cookie is no session.
	resp, _ := do(t, hc, "GET", f.base+"/", nil, map[string]string{"Cookie": CookieName + "=" + newSecret()})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: got %s want 401", resp.Status)
	}
}

func TestCSRF(t *testing.T) {
	f := start(t, Options{})
	hc := client(t)
	csrf := f.login(t, hc, "alice")
	if len(csrf) < 22 {
		t.Fatalf("csrf token %q too short", csrf)
	}
	other := newSecret()
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
		code int
	}{
		{"no token", url.Values{"what": {"x"}}, nil, 403},
		{"wrong token", url.Values{"what": {"x"}, "csrf": {other}}, nil, 403},
		{"token of the form", url.Values{"what": {"x"}, "csrf": {csrf}}, nil, 200},
		{"token in the header", url.Values{"what": {"x"}}, map[string]string{"X-CSRF-Token": csrf}, 200},
	} {
		resp, body := do(t, hc, "POST", f.base+"/act", tc.form, tc.hdr)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: got %s %q, want %d", tc.name, resp.Status, body, tc.code)
		}
	}
	if !f.audit.has("alice act") {
		t.Errorf("audit %v lacks alice's act", f.audit.lines)
	}
	// Another session's token does not serve this one.
	hc2 := client(t)
	csrf2 := f.login(t, hc2, "bob")
	if resp, _ := do(t, hc, "POST", f.base+"/act", url.Values{"csrf": {csrf2}}, nil); resp.StatusCode != 403 {
		t.Errorf("bob's token in alice's session: got %s want 403", resp.Status)
	}
}

func TestLoginLink(t *testing.T) {
	f := start(t, Options{})
	link, expires, err := f.srv.NewLoginLink("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, f.base+"/login?t=") || !expires.Equal(f.clk.now().Add(10*time.Minute)) {
		t.Errorf("link %q expires %v", link, expires)
	}
	if tok := tokenOf(t, link); len(tok) < 22 { // 128 bits in base64url
		t.Errorf("token %q shorter than 128 bits", tok)
	}
	if !f.audit.has("operator console.link") {
		t.Errorf("the link's issue is not audited: %v", f.audit.lines)
	}
	hc := client(t)
	// GET shows the button and spends nothing, however often.
	for range 2 {
		resp, body := do(t, hc, "GET", link, nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `method="post"`) {
			t.Fatalf("GET of the link: got %s", resp.Status)
		}
	}
	csrf := ""
	{
		resp, _ := do(t, hc, "POST", f.base+"/login", url.Values{"t": {tokenOf(t, link)}}, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first use: got %s want 303", resp.Status)
		}
		c := resp.Cookies()[0]
		if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || len(c.Value) < 22 {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure without TLS, ≥128 bits", c)
		}
		_, body := do(t, hc, "GET", f.base+"/", nil, nil)
		if !strings.HasPrefix(body, "staff=alice ") {
			t.Errorf("the session is not alice's: %q", body)
		}
		_, csrf, _ = strings.Cut(body, "csrf=")
	}
	if !f.audit.has("alice console.login") {
		t.Errorf("the login is not audited: %v", f.audit.lines)
	}
	// Second use: refused, on GET and POST alike.
	if resp, _ := do(t, client(t), "POST", f.base+"/login", url.Values{"t": {tokenOf(t, link)}}, nil); resp.StatusCode != 401 {
		t.Errorf("second use: got %s want 401", resp.Status)
	}
	if resp, _ := do(t, client(t), "GET", link, nil, nil); resp.StatusCode != 401 {
		t.Errorf("GET after use: got %s want 401", resp.Status)
	}

	// Expiry: a link unused for 10 minutes is dead.
	late, _, _ := f.srv.NewLoginLink("bob")
	f.clk.add(10 * time.Minute)
	if resp, _ := do(t, client(t), "POST", f.base+"/login", url.Values{"t": {tokenOf(t, late)}}, nil); resp.StatusCode != 401 {
		t.Errorf("expired link: got %s want 401", resp.Status)
	}
	// A link just inside its 10 minutes works.
	onTime, _, _ := f.srv.NewLoginLink("carol")
	f.clk.add(10*time.Minute - time.Second)
	if resp, _ := do(t, client(t), "POST", f.base+"/login", url.Values{"t": {tokenOf(t, onTime)}}, nil); resp.StatusCode != 303 {
		t.Errorf("link at 9m59s: got %s want 303", resp.Status)
	}

	// Logout ends the session.
	if resp, _ := do(t, hc, "POST", f.base+"/logout", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != 200 {
		t.Errorf("logout: got %s", resp.Status)
	}
	if resp, _ := do(t, hc, "GET", f.base+"/", nil, nil); resp.StatusCode != 401 {
		t.Errorf("after logout: got %s want 401", resp.Status)
	}
}

func TestSessionExpires(t *testing.T) {
	f := start(t, Options{SessionTTL: time.Hour})
	hc := client(t)
	f.login(t, hc, "alice")
	f.clk.add(time.Hour)
	if resp, _ := do(t, hc, "GET", f.base+"/", nil, nil); resp.StatusCode != 401 {
		t.Errorf("session after its TTL: got %s want 401", resp.Status)
	}
}

func TestLoginNeedsAudit(t *testing.T) {
	f := start(t, Options{})
	link, _, err := f.srv.NewLoginLink("alice")
	if err != nil {
		t.Fatal(err)
	}
	f.audit.mu.Lock()
	f.audit.fail = errors.New("disk full")
	f.audit.mu.Unlock()
	hc := client(t)
	if resp, _ := do(t, hc, "POST", f.base+"/login", url.Values{"t": {tokenOf(t, link)}}, nil); resp.StatusCode != 500 {
		t.Errorf("login with a failing audit: got %s want 500", resp.Status)
	}
	if resp, _ := do(t, hc, "GET", f.base+"/", nil, nil); resp.StatusCode != 401 {
		t.Errorf("after an unaudited login: got %s want 401", resp.Status)
	}
	if _, _, err := f.srv.NewLoginLink("bob"); err == nil {
		t.Error("NewLoginLink with a failing audit: got a link")
	}
}

func TestLinkNames(t *testing.T) {
	f := start(t, Options{})
	for _, name := range []string{"", strings.Repeat("a", 65), "a\nb", "\xff"} {
		if _, _, err := f.srv.NewLoginLink(name); err == nil {
			t.Errorf("NewLoginLink(%q): got a link", name)
		}
	}
	for range maxLinks {
		if _, _, err := f.srv.NewLoginLink("alice"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.srv.NewLoginLink("alice"); !errors.Is(err, ErrTooManyLinks) {
		t.Errorf("link %d: got %v want ErrTooManyLinks", maxLinks+1, err)
	}
	f.clk.add(LinkTTL)
	if _, _, err := f.srv.NewLoginLink("alice"); err != nil {
		t.Errorf("after the links expired: %v", err)
	}
}

// TestTLS serves over TLS with a test certificate on a non-loopback-capable
// listen, and checks the cookie is Secure there.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	key := testcert.Key(t)
	cert := testcert.Issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, nil, key.Public(), key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	f := start(t, Options{Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile})
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	hc := client(t)
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	link, _, err := f.srv.NewLoginLink("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "https://127.0.0.1:") {
		t.Errorf("link %q is not https", link)
	}
	resp, _ := do(t, hc, "POST", strings.Replace(f.base, "http:", "https:", 1)+"/login", url.Values{"t": {tokenOf(t, link)}}, nil)
	if resp.StatusCode != 303 || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Errorf("TLS login: got %s cookies %v, want 303 and a Secure cookie", resp.Status, resp.Cookies())
	}
	// Plain HTTP on the TLS port gets nowhere.
	if resp, err := http.Get(f.base + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP on the TLS listener answered 200")
	}
	// A certificate without its key is refused by New.
	if _, err := New(Options{Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("New with a missing key: no error")
	}
}

func TestServerTimeouts(t *testing.T) {
	srv, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := srv.srv
	if h.ReadHeaderTimeout == 0 || h.ReadTimeout == 0 || h.WriteTimeout == 0 || h.IdleTimeout == 0 || h.MaxHeaderBytes == 0 {
		t.Errorf("http.Server lacks a timeout or MaxHeaderBytes: %+v", h)
	}
}
