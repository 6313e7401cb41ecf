package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// requireOpenSSL returns the openssl binary, skipping the test when it is
// missing unless PKIBOARD_REQUIRE_OPENSSL=1 (as make test sets) makes that a
// failure.
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("PKIBOARD_REQUIRE_OPENSSL") == "1" {
			t.Fatal("openssl is required (PKIBOARD_REQUIRE_OPENSSL=1) but not on PATH")
		}
		t.Skip("openssl not on PATH")
	}
	return path
}

// openssl runs the openssl binary and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(requireOpenSSL(t), args...).CombinedOutput()
	return string(out), err
}

func TestCARootPersistsAndIsNeverRegenerated(t *testing.T) {
	in := newInstall(t, nil)
	ca := in.start("ca")
	root1, err := keys.ReadCertificate(in.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if code := ca.stop(); code != 0 {
		t.Fatalf("CA exit after SIGTERM: got %d want 0", code)
	}

	ca = in.start("ca")
	root2, err := keys.ReadCertificate(in.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if keys.FingerprintHex(root1) != keys.FingerprintHex(root2) {
		t.Errorf("root after restart: got %s want %s", keys.FingerprintHex(root2), keys.FingerprintHex(root1))
	}
	if n := ca.Logged("STEP 0"); n != 1 {
		t.Errorf("STEP 0 lines: got %d want 1", n)
	}
	ca.stop()

	if err := os.Remove(in.path("data/ca/root-key.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := in.tryStart("ca"); err == nil {
		t.Fatal("CA started with its root key deleted")
	} else if msg := err.Error(); !strings.Contains(msg, "root-key.pem") || !strings.Contains(msg, "will not") {
		t.Errorf("start without key: got %q, want it to name root-key.pem and say it will not regenerate", msg)
	}
	root3, err := keys.ReadCertificate(in.path("data/ca/root.pem"))
	if err != nil || keys.FingerprintHex(root3) != keys.FingerprintHex(root1) {
		t.Errorf("root.pem changed after the failed start: %v", err)
	}
}

func TestCAEnrollsThreeStudentsThatOpenSSLVerifies(t *testing.T) {
	requireOpenSSL(t)
	in := newInstall(t, nil)
	ca := in.start("ca")
	sids := []string{"1155000001", "1155000002", "1155000003"}
	for _, sid := range sids {
		out := in.path("students", sid)
		r := in.mustRun(nil, "enroll", "--sid", sid, "--out", out, "--ca-addr", ca.Addr)
		if got, want := r.stdout, sid+" sign finished\n"; got != want {
			t.Errorf("enroll %s stdout: got %q want %q", sid, got, want)
		}
		if fi, err := os.Stat(filepath.Join(out, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key.pem of %s: got %v, %v; want mode 0600", sid, fi, err)
		}
		cert, root := filepath.Join(out, "cert.pem"), filepath.Join(out, "root.pem")
		if outp, err := openssl(t, "verify", "-CAfile", root, cert); err != nil || !strings.Contains(outp, "OK") {
			t.Errorf("openssl verify %s: %v\n%s", sid, err, outp)
		}
		text, err := openssl(t, "x509", "-in", cert, "-noout", "-text")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CN = " + sid, "CA:FALSE", "TLS Web Client Authentication"} {
			if !strings.Contains(text, want) {
				t.Errorf("openssl x509 -text of %s lacks %q", sid, want)
			}
		}
	}
	if n := ca.Logged("STEP 2"); n != len(sids) {
		t.Errorf("CA STEP 2 lines: got %d want %d", n, len(sids))
	}
	r := in.mustRun(nil, "certs", "--json")
	var views []struct{ SID, Status string }
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, v := range views {
		listed = append(listed, v.SID)
		if v.Status != "valid" {
			t.Errorf("certs: %s is %q, want valid", v.SID, v.Status)
		}
	}
	slices.Sort(listed)
	if !slices.Equal(listed, sids) {
		t.Errorf("certs lists %v, want %v", listed, sids)
	}
}

func TestCAEnrollsOpenSSLRequests(t *testing.T) {
	requireOpenSSL(t)
	in := newInstall(t, nil)
	ca := in.start("ca")
	tests := []struct {
		name string
		args []string
	}{
		{"rsa-2048", []string{"-newkey", "rsa:2048"}},
		{"ec-p256", []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := "ossl-" + tt.name
			dir := in.path("openssl", tt.name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			key, csr := filepath.Join(dir, "openssl-key.pem"), filepath.Join(dir, "req.pem")
			args := append([]string{"req", "-new", "-nodes", "-subj", "/CN=" + sid, "-keyout", key, "-out", csr}, tt.args...)
			if out, err := openssl(t, args...); err != nil {
				t.Fatalf("openssl req: %v\n%s", err, out)
			}
			r := in.mustRun(nil, "enroll", "--sid", sid, "--csr", csr, "--key", key, "--out", dir, "--ca-addr", ca.Addr)
			if !strings.Contains(r.stdout, sid+" sign finished") {
				t.Errorf("stdout: got %q", r.stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "key.pem")); !os.IsNotExist(err) {
				t.Errorf("key.pem written although the key was given: %v", err)
			}
			if out, err := openssl(t, "verify", "-CAfile", filepath.Join(dir, "root.pem"), filepath.Join(dir, "cert.pem")); err != nil {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
		})
	}
}

// rawEnroll sends one EnrollRequest on wc and returns the code of the CA's
// Error, or 0 when the CA issued the certificate (which its answer carries).
func rawEnroll(t *testing.T, wc *wire.Conn, req *wire.EnrollRequest) wire.Code {
	t.Helper()
	if err := wc.WriteMessage(req); err != nil {
		t.Fatal(err)
	}
	_, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage())
	var werr *wire.Error
	if errors.As(err, &werr) {
		return werr.Code
	}
	if err != nil {
		t.Fatalf("enroll %s: %v", req.SID, err)
	}
	return 0
}

// rootFP returns the fingerprint of the root certificate in path.
func rootFP(t testing.TB, path string) [32]byte {
	t.Helper()
	root, err := keys.ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return keys.Fingerprint(root)
}

// enrollRequest returns a version 2 EnrollRequest naming root, signed with
// token as a client does (no authorization when token is "").
func enrollRequest(t testing.TB, profile uint8, sid string, csr []byte, root [32]byte, token string) *wire.EnrollRequest {
	t.Helper()
	req := &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: profile, SID: sid, CSR: csr, Root: root}
	if token != "" {
		key, err := ca.TokenKey(token)
		if err != nil {
			t.Fatal(err)
		}
		req.Auth, req.TokenKey = wire.AuthToken, key.Public().(ed25519.PublicKey)
		req.Signature = ed25519.Sign(key, wire.EnrollBinding(req.Auth, req.Profile, req.SID, req.Root, req.CSR))
	}
	return req
}

// receiveFile receives one file the CA sends on wc, into memory, and
// acknowledges it with FileAck, as a client of the CA exchange does
// (PROTOCOL.md §4). It returns the file's content.
func receiveFile(wc *wire.Conn) ([]byte, error) {
	r := wire.Receiver{MaxSize: 1 << 20}
	in, err := r.Receive(wc)
	if err != nil {
		return nil, err
	}
	if err := wc.WriteMessage(&wire.FileAck{}); err != nil {
		return nil, err
	}
	return in.Sink.(*wire.Memory).Bytes(), nil
}

func makeCSR(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ecKey returns a fresh P-256 key. It may be called from any goroutine: key
// generation from crypto/rand does not fail (a broken random source stops the
// program), so there is nothing to report to a test.
func ecKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func dialCA(t *testing.T, addr string) *wire.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return wire.NewConn(c, wire.Options{ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
}

// token asks the running CA, through the operator command, for a token.
func (in *install) token(t *testing.T, args ...string) string {
	t.Helper()
	r := in.mustRun(nil, append([]string{"token"}, args...)...)
	tok, _, _ := strings.Cut(r.stdout, "\n")
	if !strings.HasPrefix(tok, "pkbt_") {
		t.Fatalf("token output: %q", r.stdout)
	}
	return tok
}

func TestCARefusalsEachHaveTheirCode(t *testing.T) {
	in := newInstall(t, map[string]string{
		"ca": "policy = \"token\"\nroster_file = \"roster.txt\"\nsid_pattern = \"^1155[0-9]{6}$\"",
	})
	roster := "# the course roster\n1155000001\n1155000002\n1155000003\n1155000004\n1155000005\n"
	if err := os.WriteFile(in.path("roster.txt"), []byte(roster), 0o600); err != nil {
		t.Fatal(err)
	}
	caProc := in.start("ca")
	wc := dialCA(t, caProc.Addr)
	fp := rootFP(t, in.path("data/ca/root.pem"))
	req := func(profile uint8, sid string, csr []byte, token string) *wire.EnrollRequest {
		return enrollRequest(t, profile, sid, csr, fp, token)
	}
	good := func(sid string) *wire.EnrollRequest {
		return req(wire.ProfileStudent, sid, makeCSR(t, ecKey(), sid), in.token(t, "--sid", sid))
	}
	tok := func(sid string) string { return in.token(t, "--sid", sid) }
	brokenSig := makeCSR(t, ecKey(), "1155000001")
	brokenSig[len(brokenSig)-3] ^= 0xff
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	usedToken := tok("1155000002")
	if code := rawEnroll(t, wc, req(1, "1155000002", makeCSR(t, ecKey(), "1155000002"), usedToken)); code != 0 {
		t.Fatalf("first use of a token: got code %v", code)
	}
	expired := in.token(t, "--sid", "1155000003", "--ttl", "1ms")
	time.Sleep(10 * time.Millisecond)

	// One token for the refusals: a request refused after the token is
	// checked spends nothing, and a second token would cancel the first.
	tok1 := tok("1155000001")
	tests := []struct {
		name string
		req  *wire.EnrollRequest
		want wire.Code
	}{
		{"garbage instead of a CSR", req(1, "1155000001", []byte("not a CSR at all"), tok1), wire.CodeBadCSR},
		{"broken CSR signature", req(1, "1155000001", brokenSig, tok1), wire.CodeBadCSRSignature},
		{"RSA-1024", req(1, "1155000001", makeCSR(t, rsa1024, "1155000001"), tok1), wire.CodeWeakKey},
		{"SID failing the pattern", req(1, "bob", makeCSR(t, ecKey(), "bob"), tok1), wire.CodeBadSID},
		{"CN is not the SID", req(1, "1155000001", makeCSR(t, ecKey(), "1155000002"), tok1), wire.CodeCNMismatch},
		{"SID not on the roster", req(1, "1155999999", makeCSR(t, ecKey(), "1155999999"), tok1), wire.CodeNotOnRoster},
		{"token missing", req(1, "1155000001", makeCSR(t, ecKey(), "1155000001"), ""), wire.CodeTokenRequired},
		{"token wrong", req(1, "1155000001", makeCSR(t, ecKey(), "1155000001"), "pkbt_"+strings.Repeat("A", 43)), wire.CodeTokenInvalid},
		{"token expired", req(1, "1155000003", makeCSR(t, ecKey(), "1155000003"), expired), wire.CodeTokenExpired},
		{"token reused", req(1, "1155000002", makeCSR(t, ecKey(), "1155000002"), usedToken), wire.CodeTokenUsed},
		{"wrong root", enrollRequest(t, 1, "1155000001", makeCSR(t, ecKey(), "1155000001"), [32]byte{1}, tok1), wire.CodeWrongRoot},
		{"board without a token", req(2, "blackboard", makeCSR(t, ecKey(), "blackboard"), ""), wire.CodeBoardNotAuthorized},
		{"unknown profile", req(9, "1155000001", makeCSR(t, ecKey(), "1155000001"), ""), wire.CodeBadProfile},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawEnroll(t, wc, tt.req); got != tt.want {
				t.Errorf("got code %v (%d) want %v (%d)", got, got, tt.want, tt.want)
			}
			// The connection stays usable, and the CA still serves a good request.
			sid := fmt.Sprintf("115500000%d", 4+i%2)
			if got := rawEnroll(t, wc, good(sid)); got != 0 {
				t.Errorf("good request after the refusal: got code %v", got)
			}
		})
	}

	t.Run("frame over the size limit", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", caProc.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 1<<20)); err != nil {
			t.Fatal(err)
		}
		p, err := wire.ReadFrame(c, wire.DefaultMaxFrame, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := wire.Unmarshal(p)
		if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.CodeFrameTooLarge {
			t.Errorf("got %v, %v; want an Error with code frame-too-large", m, err)
		}
		if _, err := wire.ReadFrame(c, wire.DefaultMaxFrame, nil); err == nil {
			t.Error("the CA kept the connection open after a frame over the limit")
		}
		if got := rawEnroll(t, dialCA(t, caProc.Addr), good("1155000005")); got != 0 {
			t.Errorf("good request after an oversized frame: got code %v", got)
		}
	})
}

func TestCARevocationAppearsInCRL(t *testing.T) {
	requireOpenSSL(t)
	in := newInstall(t, nil)
	caProc := in.start("ca")
	out := in.path("students", "a")
	in.mustRun(nil, "enroll", "--sid", "alice", "--out", out, "--ca-addr", caProc.Addr)
	cert, err := keys.ReadCertificate(filepath.Join(out, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serial := keys.SerialHex(cert.SerialNumber)
	r := in.mustRun(nil, "revoke", "--serial", serial, "--reason", "keyCompromise")
	if !strings.Contains(r.stdout, "revoked 1") {
		t.Errorf("revoke stdout: %q", r.stdout)
	}
	// The CRL as any client fetches it over the wire.
	data, err := ca.Client{Addr: caProc.Addr}.Fetch(context.Background(), "crl.pem")
	if err != nil {
		t.Fatal(err)
	}
	crlFile := in.path("fetched-crl.pem")
	if err := os.WriteFile(crlFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(out, "root.pem")
	if outp, err := openssl(t, "crl", "-in", crlFile, "-CAfile", root, "-noout"); err != nil || !strings.Contains(outp, "verify OK") {
		t.Errorf("openssl crl verify: %v\n%s", err, outp)
	}
	text, err := openssl(t, "crl", "-in", crlFile, "-noout", "-text")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, strings.ToUpper(serial)) || !strings.Contains(text, "Key Compromise") {
		t.Errorf("openssl crl -text lacks serial %s with Key Compromise:\n%s", strings.ToUpper(serial), text)
	}
	if outp, err := openssl(t, "verify", "-crl_check", "-CAfile", root, "-CRLfile", crlFile, filepath.Join(out, "cert.pem")); err == nil || !strings.Contains(outp, "revoked") {
		t.Errorf("openssl verify -crl_check of the revoked cert: %v\n%s", err, outp)
	}
	// The operator view agrees, through the daemon and, once it is stopped, offline.
	for _, phase := range []string{"running", "stopped"} {
		if phase == "stopped" {
			caProc.stop()
		}
		r = in.mustRun(nil, "certs")
		if !strings.Contains(r.stdout, serial) || !strings.Contains(r.stdout, "revoked") {
			t.Errorf("certs with the CA %s: %q", phase, r.stdout)
		}
	}
}

// TestCACrashDuringEnrollmentBurst kills the CA with SIGKILL in the middle of
// a burst of concurrent enrollments, restarts it, and checks that every
// certificate a client received is in the store, serials are unique, and the
// CA works again.
func TestCACrashDuringEnrollmentBurst(t *testing.T) {
	const iterations, clients = 3, 48
	in := newInstall(t, nil)
	received := map[string]string{} // serial → SID, across iterations
	for it := range iterations {
		caProc := in.start("ca")
		var (
			mu        sync.Mutex
			wg        sync.WaitGroup
			got       = map[string]string{}
			first     = make(chan struct{})
			firstOnce sync.Once
		)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sid := fmt.Sprintf("crash%d-%02d", it, i)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, err := ca.Client{Addr: caProc.Addr}.Enroll(ctx, ca.EnrollOptions{
					SID: sid, Key: ecKey(), OutDir: filepath.Join(in.dir, "crash", sid),
				})
				if err != nil {
					return // killed mid-way: the client got nothing
				}
				mu.Lock()
				got[keys.SerialHex(res.Certificate.SerialNumber)] = sid
				mu.Unlock()
				firstOnce.Do(func() { close(first) })
			}()
		}
		// Kill in the middle of the burst: once the first client holds its
		// certificate, after a random few milliseconds more.
		select {
		case <-first:
		case <-time.After(15 * time.Second):
			t.Fatal("no client enrolled within 15s")
		}
		time.Sleep(time.Duration(mrand.IntN(30)) * time.Millisecond)
		caProc.Kill()
		wg.Wait()
		for serial, sid := range got {
			if prev, dup := received[serial]; dup {
				t.Errorf("serial %s issued twice: to %s and %s", serial, prev, sid)
			}
			received[serial] = sid
		}
		t.Logf("iteration %d: %d of %d clients received a certificate before SIGKILL", it, len(got), clients)
	}

	caProc := in.start("ca")
	r := in.mustRun(nil, "certs", "--json")
	var views []struct{ Serial, SID string }
	if err := json.Unmarshal([]byte(r.stdout), &views); err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, v := range views {
		if _, dup := stored[v.Serial]; dup {
			t.Errorf("serial %s stored twice", v.Serial)
		}
		stored[v.Serial] = v.SID
	}
	for serial, sid := range received {
		if stored[serial] != sid {
			t.Errorf("certificate %s received by %s is not in the store", serial, sid)
		}
	}
	t.Logf("%d certificates received by clients, %d stored (a stored one may not have reached its client)", len(received), len(stored))
	// The CA works again after the crashes.
	in.mustRun(nil, "enroll", "--sid", "after-crash", "--out", in.path("after"), "--ca-addr", caProc.Addr)
}

func TestEnrollChecksTheRoot(t *testing.T) {
	other := newInstall(t, nil)
	otherCA := other.start("ca")
	otherRoot, err := keys.ReadCertificate(other.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherCA.stop()

	in := newInstall(t, nil)
	caProc := in.start("ca")
	root, err := keys.ReadCertificate(in.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		fingerprint string
		savedRoot   string // PEM file placed in the output directory first
		wantErr     string
	}{
		{"matching fingerprint", keys.FingerprintHex(root), "", ""},
		// A pinned client fetches nothing (PROTOCOL.md §4.1): its request
		// names the pin, and the CA refuses it before anything is spent.
		{"wrong fingerprint", keys.FingerprintHex(otherRoot), "", "wrong-root"},
		{"no fingerprint, first use", "", "", ""},
		// The client trusts the root it saved: its request names it, and the
		// CA refuses it before anything is spent.
		{"no fingerprint, root saved from another CA", "", other.path("data/ca/root.pem"), "wrong-root"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := in.path("root-check", fmt.Sprint(i))
			if tt.savedRoot != "" {
				data, err := os.ReadFile(tt.savedRoot)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(out, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(out, "root.pem"), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var fp []byte
			if tt.fingerprint != "" {
				fp, _ = hex.DecodeString(strings.ReplaceAll(tt.fingerprint, ":", ""))
			}
			_, err := ca.Client{Addr: caProc.Addr}.Enroll(context.Background(), ca.EnrollOptions{
				SID: fmt.Sprintf("root-check-%d", i), KeyAlgorithm: "ecdsa-p256", OutDir: out, RootFingerprint: fp,
			})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v want an error containing %q", err, tt.wantErr)
			case tt.wantErr != "":
				if _, err := os.Stat(filepath.Join(out, "cert.pem")); !os.IsNotExist(err) {
					t.Errorf("cert.pem written although the root was refused: %v", err)
				}
			}
		})
	}
}
