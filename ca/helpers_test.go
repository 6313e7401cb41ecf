package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// testSID is the SID of the CSR fixtures in testdata.
const testSID = "1155000001"

// testBoard is the board name of the test CA (and the CN of testdata/board.csr).
const testBoard = "blackboard"

// t0 is the test clock's start.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testCA is an Authority under test with its clock and captured log.
type testCA struct {
	*Authority
	opts  Options
	clock *clock
	logs  *observer.ObservedLogs
}

// testOptions returns options for a CA in a fresh directory: open policy, a
// ten-digit SID pattern, the board "blackboard", the test clock.
func testOptions(t testing.TB, c *clock) Options {
	t.Helper()
	return Options{
		Dir:          t.TempDir(),
		Create:       true,
		Subject:      pkix.Name{CommonName: "CUHK Test Root CA", Organization: []string{"CUHK"}, Country: []string{"HK"}},
		KeyAlgorithm: "ecdsa-p256",
		RootValidity: 10 * 365 * 24 * time.Hour,
		CertValidity: 180 * 24 * time.Hour,
		CRLValidity:  7 * 24 * time.Hour,
		Policy:       PolicyOpen,
		SIDPattern:   regexp.MustCompile(`^[0-9]{10}$`),
		TokenTTL:     72 * time.Hour,
		BoardName:    testBoard,
		Now:          c.Now,
	}
}

// open opens a CA with o, capturing its log, and closes it when the test
// ends.
func open(t testing.TB, o Options, c *clock) *testCA {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	o.Log = zap.New(core)
	a, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &testCA{Authority: a, opts: o, clock: c, logs: logs}
}

// newCA opens a CA with the test options, changed by mod when not nil.
func newCA(t testing.TB, mod func(*Options)) *testCA {
	t.Helper()
	c := newClock()
	o := testOptions(t, c)
	if mod != nil {
		mod(&o)
	}
	return open(t, o, c)
}

// reopen closes the CA and opens it again on the same directory and clock.
func (tc *testCA) reopen(t testing.TB) *testCA {
	t.Helper()
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, tc.opts, tc.clock)
}

// fixtureCSR returns the DER of a PEM CSR in testdata.
func fixtureCSR(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("testdata/%s holds no CERTIFICATE REQUEST", name)
	}
	return block.Bytes
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR returns a DER CSR for key with the subject CN=cn.
func makeCSR(t testing.TB, key crypto.Signer, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// req returns a request naming the test CA's root, authorized by token
// (none when token is "").
func (tc *testCA) req(t testing.TB, profile uint8, sid string, csr []byte, token string) Request {
	t.Helper()
	r := Request{Profile: profile, SID: sid, CSR: csr, Root: tc.rootFP, Peer: "192.0.2.1:4000"}
	if token != "" {
		signToken(t, &r, token)
	}
	return r
}

// signToken authorizes r with token (auth 1), as a client does.
func signToken(t testing.TB, r *Request, token string) {
	t.Helper()
	key, err := TokenKey(token)
	if err != nil {
		t.Fatal(err)
	}
	r.Auth, r.Certificate = wire.AuthToken, nil
	r.TokenKey = key.Public().(ed25519.PublicKey)
	r.Signature = ed25519.Sign(key, wire.EnrollBinding(r.Auth, r.Profile, r.SID, r.Root, r.CSR))
}

// signRenewal authorizes r as the renewal of cert, whose key is key (auth 2).
func signRenewal(t testing.TB, r *Request, cert *x509.Certificate, key crypto.Signer) {
	t.Helper()
	r.Auth, r.TokenKey, r.Certificate = wire.AuthRenewal, nil, cert.Raw
	sig, err := keys.Sign(key, rand.Reader, wire.EnrollBinding(r.Auth, r.Profile, r.SID, r.Root, r.CSR))
	if err != nil {
		t.Fatal(err)
	}
	r.Signature = sig
}

// enroll enrolls a fresh P-256 key for sid with the student profile.
func (tc *testCA) enroll(t testing.TB, sid, token string) (*Issued, error) {
	t.Helper()
	iss, _, err := tc.enrollKey(t, wire.ProfileStudent, sid, token)
	return iss, err
}

// enrollKey enrolls a fresh P-256 key for sid and returns it with the
// certificate.
func (tc *testCA) enrollKey(t testing.TB, profile uint8, sid, token string) (*Issued, crypto.Signer, error) {
	t.Helper()
	key := newKey(t)
	iss, err := tc.Enroll(context.Background(), tc.req(t, profile, sid, makeCSR(t, key, sid), token))
	return iss, key, err
}

// renew renews cert (with key) for a fresh key and returns the new
// certificate and key.
func (tc *testCA) renew(t testing.TB, cert *x509.Certificate, key crypto.Signer) (*Issued, crypto.Signer, error) {
	t.Helper()
	next := newKey(t)
	sid := cert.Subject.CommonName
	profile := wire.ProfileStudent
	if sid == testBoard {
		profile = wire.ProfileBoard
	}
	r := tc.req(t, profile, sid, makeCSR(t, next, sid), "")
	signRenewal(t, &r, cert, key)
	iss, err := tc.Enroll(context.Background(), r)
	return iss, next, err
}

func (tc *testCA) mustEnroll(t testing.TB, sid, token string) *Issued {
	t.Helper()
	iss, err := tc.enroll(t, sid, token)
	if err != nil {
		t.Fatalf("enroll %s: %v", sid, err)
	}
	return iss
}

// boardToken returns a new board token.
func (tc *testCA) boardToken(t testing.TB) string {
	t.Helper()
	tok, _, err := tc.CreateBoardToken(0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// token returns a new student token for sid.
func (tc *testCA) token(t testing.TB, sid string) string {
	t.Helper()
	tok, _, err := tc.CreateToken(sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantRefusal fails unless err is a *wire.Refusal with code.
func wantRefusal(t testing.TB, err error, code wire.Code) *wire.Refusal {
	t.Helper()
	var r *wire.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal %s", err, code)
	}
	if r.Code != code {
		t.Fatalf("got refusal %s (%q), want %s", r.Code, r.Text, code)
	}
	return r
}

// openssl returns the path of the openssl binary. Without one the test is
// skipped, unless PKIBOARD_REQUIRE_OPENSSL=1, in which case it fails.
func openssl(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		msg := fmt.Sprintf("openssl not found on PATH: %v", err)
		if os.Getenv("PKIBOARD_REQUIRE_OPENSSL") == "1" {
			t.Fatalf("%s (PKIBOARD_REQUIRE_OPENSSL=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_OPENSSL=1 to make this a failure", msg)
	}
	return bin
}

// runOpenSSL runs openssl and returns its standard output and standard
// error; err reports a non-zero exit.
func runOpenSSL(bin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
