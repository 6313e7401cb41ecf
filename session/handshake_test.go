package session

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// lab returns the course's message for sid: "This is submission from SID.\n"
// ten times.
func lab(sid string) []byte {
	return []byte(strings.Repeat("This is submission from "+sid+".\n", 10))
}

// randomContent returns n random bytes: several Data records' worth.
func randomContent(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestSessionSucceeds(t *testing.T) {
	p := pki(t)
	for _, kt := range []string{"p256", "p384", "rsa2048"} {
		for _, suite := range []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
			for _, content := range [][]byte{lab(testSID), randomContent(3*wire.MaxDataChunk + 17)} {
				name := fmt.Sprintf("%s/%s/%d", kt, SuiteName(suite), len(content))
				t.Run(name, func(t *testing.T) {
					sc := p.serverConfig()
					sc.AllowRC4 = suite == SuiteRC4HMACSHA256
					cc := p.clientConfig(kt)
					cc.Suites = []uint16{suite}
					r := runSession(t, scenario{server: sc, client: cc, content: content})
					if r.serverErr != nil || r.clientErr != nil {
						t.Fatalf("board: %v; student: %v", r.serverErr, r.clientErr)
					}
					checkSuccess(t, p, r, content, "message.txt", suite)

					// The facts the roles log as STEP 3, 4 and 5 (roles tests
					// check the lines).
					want := map[string]uint8{"p256": wire.KeyTransportHPKEP256, "p384": wire.KeyTransportHPKEP384, "rsa2048": wire.KeyTransportRSAOAEP}[kt]
					if r.board.KeyTransport() != want || r.student.KeyTransport() != want {
						t.Errorf("key transports: board %s, student %s, want %s",
							KeyTransportName(r.board.KeyTransport()), KeyTransportName(r.student.KeyTransport()), KeyTransportName(want))
					}
					if r.sub.Suite != suite {
						t.Errorf("Submission.Suite = %s, want %s", SuiteName(r.sub.Suite), SuiteName(suite))
					}
				})
			}
		}
	}
}

// checkSuccess checks a successful session: both sides agree, the content
// arrived intact, and the receipt and the statement verify offline with the
// root alone.
func checkSuccess(t *testing.T, p *testPKI, r result, content []byte, name string, suite uint16) {
	t.Helper()
	if !bytes.Equal(r.received, content) {
		t.Errorf("the board received %d bytes that differ from the %d sent", len(r.received), len(content))
	}
	if r.board.Suite() != suite || r.student.Suite() != suite {
		t.Errorf("suites: board %s, student %s, want %s", SuiteName(r.board.Suite()), SuiteName(r.student.Suite()), SuiteName(suite))
	}
	if r.board.TranscriptHash() != r.student.TranscriptHash() {
		t.Errorf("the two sides have different transcript hashes")
	}
	if got := r.board.PeerCertificate().Subject.CommonName; got != testSID {
		t.Errorf("board's peer CN = %q, want %q", got, testSID)
	}
	if got := r.student.PeerCertificate().Subject.CommonName; got != testBoardName {
		t.Errorf("student's peer CN = %q, want %q", got, testBoardName)
	}
	if r.board.SID() != testSID || r.student.SID() != testSID {
		t.Errorf("SIDs: board %q, student %q", r.board.SID(), r.student.SID())
	}

	now := time.Now()
	board := r.student.PeerCertificate()
	if err := VerifyReceipt(r.receipt, board, p.root.cert, now); err != nil {
		t.Errorf("VerifyReceipt: %v", err)
	}
	if r.receipt.BoardCertSHA256 != sha256.Sum256(board.Raw) {
		t.Errorf("the receipt names board certificate %x, not the session's", r.receipt.BoardCertSHA256)
	}
	bad := *r.receipt
	bad.Size++
	if err := VerifyReceipt(&bad, board, p.root.cert, now); !errors.Is(err, keys.ErrBadSignature) {
		t.Errorf("VerifyReceipt of a changed receipt: got %v, want keys.ErrBadSignature", err)
	}
	if err := VerifyReceipt(r.receipt, board, p.other.cert, now); err == nil {
		t.Errorf("VerifyReceipt with another root succeeded")
	}
	if st := r.student.BoardStatus(); st == nil || st.CRLNumber != testCRLNumber {
		t.Errorf("the student's session holds board status %+v, want the board's of CRL number %d", st, testCRLNumber)
	}

	sum := sha256.Sum256(content)
	sub := r.sub
	want, err := Statement(sub.TranscriptHash, testSID, sub.TermsBody, name, name, uint64(len(content)), sum)
	if err != nil || !bytes.Equal(sub.Statement, want) {
		t.Errorf("Submission.Statement differs from Statement(...) (%v)", err)
	}
	if err := VerifyStatement(sub.Chain[0], p.root.cert, now, testSID, sub.Statement, sub.Signature); err != nil {
		t.Errorf("VerifyStatement: %v", err)
	}
	sum[0] ^= 1
	other, _ := Statement(sub.TranscriptHash, testSID, sub.TermsBody, name, name, uint64(len(content)), sum)
	if err := VerifyStatement(sub.Chain[0], p.root.cert, now, testSID, other, sub.Signature); !errors.Is(err, keys.ErrBadSignature) {
		t.Errorf("VerifyStatement of another SHA-256: got %v, want keys.ErrBadSignature", err)
	}
}

// TestReceiptNamesTheBoard checks that the student refuses a receipt, signed
// by the board's key, that names another board certificate than the one of
// the session (board_cert_sha256, PROTOCOL.md §5.4).
func TestReceiptNamesTheBoard(t *testing.T) {
	p := pki(t)
	other := p.root.issue(certSpec{cn: testBoardName, key: p.board.key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: lab(testSID),
		beforeReceipt: func(c *Conn) { c.own = other.leaf() }})
	if !errors.Is(r.clientErr, ErrBadReceipt) || !strings.Contains(r.clientErr.Error(), "board certificate") {
		t.Errorf("a receipt naming another board certificate: got %v, want ErrBadReceipt", r.clientErr)
	}
	// Offline too: the receipt verifies with the certificate it names, and
	// not with the session's, although both have the board's key.
	r = runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: lab(testSID)})
	if r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	if err := VerifyReceipt(r.receipt, other.leaf(), p.root.cert, time.Now()); err == nil {
		t.Error("VerifyReceipt took the receipt with another certificate of the board's key")
	}
}

// TestSuiteChoice checks that the board takes the first suite in the
// student's order that it allows, and skips unknown ids.
func TestSuiteChoice(t *testing.T) {
	p := pki(t)
	aes, rc4 := SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256
	tests := []struct {
		name     string
		offer    []uint16
		allowRC4 bool
		want     uint16
	}{
		{"rc4 first, not allowed", []uint16{rc4, aes}, false, aes},
		{"rc4 first, allowed", []uint16{rc4, aes}, true, rc4},
		{"aes first, rc4 allowed", []uint16{aes, rc4}, true, aes},
		{"unknown ids skipped", []uint16{0x7777, 0xffff, aes}, false, aes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := p.serverConfig()
			sc.AllowRC4 = tt.allowRC4
			cc := p.clientConfig("p256")
			cc.testHookClientHello = func(ch *wire.ClientHello) { ch.Suites = tt.offer }
			r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID)})
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("board: %v; student: %v", r.serverErr, r.clientErr)
			}
			if r.board.Suite() != tt.want {
				t.Errorf("chose %s, want %s", SuiteName(r.board.Suite()), SuiteName(tt.want))
			}
		})
	}
}

// TestBoardRefuses checks every refusal of step 3: the board returns a
// *wire.Refusal with the code and the student receives it as a *wire.Error.
// The hooks change the hello before the student signs it (a student that
// sends such a hello), or after (someone on the way).
func TestBoardRefuses(t *testing.T) {
	p := pki(t)
	student := func(s certSpec) identity {
		if s.cn == "" {
			s.cn = testSID
		}
		if s.key == nil {
			s.key = p.keys["p256"]
		}
		if s.eku == nil {
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		return p.root.issue(s)
	}
	withCert := func(id identity) func(*ServerConfig, *ClientConfig) {
		return func(_ *ServerConfig, cc *ClientConfig) { cc.Certificate, cc.Key = id.leaf(), id.key }
	}
	withHello := func(f func(*wire.ClientHello)) func(*ServerConfig, *ClientConfig) {
		return func(_ *ServerConfig, cc *ClientConfig) { cc.testHookClientHello = f }
	}
	onTheWay := func(f func(*wire.ClientHello)) func(*ServerConfig, *ClientConfig) {
		return func(_ *ServerConfig, cc *ClientConfig) { cc.testHookSignedHello = f }
	}
	withStatus := func(status []byte) func(*ServerConfig, *ClientConfig) {
		return func(sc *ServerConfig, _ *ClientConfig) { sc.Status = func() []byte { return status } }
	}
	clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	ed := p.root.issue(certSpec{cn: testSID, key: ed25519Key(), eku: clientAuth})
	pastStart, pastEnd := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 5, 1, 12, 0, 0, 0, time.UTC)
	minute := uint64(time.Minute.Milliseconds())

	tests := []struct {
		name  string
		setup func(*ServerConfig, *ClientConfig)
		code  wire.Code
		text  string // a part of the refusal's text
	}{
		{"another CA", withCert(p.otherStudent()), wire.CodeUnknownCA, `issued by "Some Other Root CA"`},
		{"another CA and expired", withCert(p.other.issue(certSpec{cn: testSID, key: p.keys["p256"], eku: clientAuth,
			notBefore: pastStart, notAfter: pastEnd})), wire.CodeUnknownCA, "not signed by"},
		{"named like the root, signed by another key", withCert(newRoot("CUHK Course Root CA", ecKey(elliptic.P256(), "fake root")).issue(
			certSpec{cn: testSID, key: p.keys["p256"], eku: clientAuth})), wire.CodeUnknownCA, "not signed by"},
		{"expired", withCert(student(certSpec{notBefore: pastStart, notAfter: pastEnd})), wire.CodeCertExpired,
			"expired at 2021-05-01 12:00 UTC; enroll again"},
		{"not yet valid", withCert(student(certSpec{notBefore: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)})), wire.CodeCertExpired,
			"not valid before 2099-01-01 00:00 UTC"},
		{"expired and serverAuth only", withCert(student(certSpec{notBefore: pastStart, notAfter: pastEnd,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})), wire.CodeCertExpired, "expired"},
		{"revoked", func(sc *ServerConfig, _ *ClientConfig) {
			sc.CheckRevoked = func(c *x509.Certificate) error {
				return wire.Refusef(wire.CodeCertRevoked, "your certificate (serial %s) was revoked; enroll again", keys.SerialHex(c.SerialNumber))
			}
		}, wire.CodeCertRevoked, "was revoked"},
		{"stale CRL", func(sc *ServerConfig, _ *ClientConfig) {
			sc.CheckRevoked = func(*x509.Certificate) error {
				return wire.Refusef(wire.CodeCRLUnavailable, "the board holds no fresh CRL; try again later")
			}
		}, wire.CodeCRLUnavailable, "no fresh CRL"},
		{"revocation check error", func(sc *ServerConfig, _ *ClientConfig) {
			sc.CheckRevoked = func(*x509.Certificate) error { return errors.New("crl.pem: no such file") }
		}, wire.CodeCRLUnavailable, "try again later"},
		{"no status of its own", withStatus(nil), wire.CodeCRLUnavailable, "no fresh status"},
		{"its status expired", withStatus(p.boardStatus(t, func(s *wire.BoardStatus) {
			s.NextUpdate = uint64(time.Now().Add(-time.Minute).Unix())
		})), wire.CodeCRLUnavailable, "no fresh status"},
		{"a status of another certificate", withStatus(p.boardStatus(t, func(s *wire.BoardStatus) { s.CertSHA256[0] ^= 1 })),
			wire.CodeCRLUnavailable, "no fresh status"},
		{"a status that does not decode", withStatus([]byte("garbage")), wire.CodeCRLUnavailable, "no fresh status"},
		{"CN of another SID", withCert(student(certSpec{cn: "1155000002"})), wire.CodeSIDMismatch,
			`your certificate is for SID "1155000002" but you connected as SID "1155000001"`},
		{"serverAuth only", withCert(student(certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})), wire.CodeWrongUsage,
			"does not include clientAuth"},
		{"no extended key usage extension", withCert(student(certSpec{eku: []x509.ExtKeyUsage{}})), wire.CodeWrongUsage,
			"does not include clientAuth"},
		{"anyExtendedKeyUsage only", withCert(student(certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})), wire.CodeWrongUsage,
			"does not include clientAuth"},
		{"CA certificate", withCert(student(certSpec{isCA: true, eku: clientAuth})), wire.CodeWrongUsage, "CA certificate"},
		{"the root itself", withCert(identity{chain: []*x509.Certificate{p.root.cert}, key: p.root.key}), wire.CodeWrongUsage, "clientAuth"},
		{"rc4 alone, not allowed", func(_ *ServerConfig, cc *ClientConfig) {
			cc.Suites = []uint16{SuiteRC4HMACSHA256}
		}, wire.CodeSuiteNotAllowed, "(rc4-hmac-sha256) is allowed"},
		{"unknown suites only", withHello(func(ch *wire.ClientHello) { ch.Suites = []uint16{0x1234} }), wire.CodeSuiteNotAllowed, "0x1234"},
		{"version 1", withHello(func(ch *wire.ClientHello) { ch.Version = 1 }), wire.CodeBadVersion, "version 1"},
		{"version 2", withHello(func(ch *wire.ClientHello) { ch.Version = 2 }), wire.CodeBadVersion, "version 2"},
		{"version 3", withHello(func(ch *wire.ClientHello) { ch.Version = 3 }), wire.CodeBadVersion, "version 3"},
		{"hello an hour old", withHello(func(ch *wire.ClientHello) { ch.Time -= 60 * minute }), wire.CodeStaleHello, "the board's time is"},
		{"hello six minutes ahead", withHello(func(ch *wire.ClientHello) { ch.Time += 6 * minute }), wire.CodeStaleHello, "check your computer's clock"},
		{"hello at the end of time", withHello(func(ch *wire.ClientHello) { ch.Time = 1<<64 - 1 }), wire.CodeStaleHello, "the board's time is"},
		{"hello timed at 0", withHello(func(ch *wire.ClientHello) { ch.Time = 0 }), wire.CodeStaleHello, "1970-01-01T00:00:00Z"},
		{"KEM X25519", withHello(func(ch *wire.ClientHello) { ch.KEM = 0x0020 }), wire.CodeBadKeyShare, "KEM 0x0020"},
		{"X-Wing key too short", withHello(func(ch *wire.ClientHello) { ch.KEMPublic = ch.KEMPublic[:100] }), wire.CodeBadKeyShare, "not valid"},
		{"X-Wing key out of range", withHello(func(ch *wire.ClientHello) {
			ch.KEMPublic = bytes.Repeat([]byte{0xff}, len(ch.KEMPublic))
		}), wire.CodeBadKeyShare, "not valid"},
		{"Ed25519 key", withHello(func(ch *wire.ClientHello) { ch.Certificate = ed.leaf().Raw }),
			wire.CodeUnsupportedKey, "Ed25519"},
		{"certificate garbage", withHello(func(ch *wire.ClientHello) { ch.Certificate = []byte("not DER") }),
			wire.CodeUnknownCA, "could not be parsed"},
		{"signature flipped on the way", onTheWay(func(ch *wire.ClientHello) { ch.Signature[len(ch.Signature)-1] ^= 1 }),
			wire.CodeBadHelloSignature, "does not verify"},
		{"time changed on the way", onTheWay(func(ch *wire.ClientHello) { ch.Time++ }), wire.CodeBadHelloSignature, "does not verify"},
		{"random changed on the way", onTheWay(func(ch *wire.ClientHello) { ch.Random[0] ^= 1 }), wire.CodeBadHelloSignature, "does not verify"},
		{"X-Wing key replaced on the way", onTheWay(func(ch *wire.ClientHello) {
			k, _ := xwing.GenerateKey()
			ch.KEMPublic = k.PublicKey().Bytes()
		}), wire.CodeBadHelloSignature, "does not verify"},
		{"signed with another key", func(_ *ServerConfig, cc *ClientConfig) { cc.Key = ecKey(elliptic.P256(), "impostor") },
			wire.CodeBadHelloSignature, "your key file belongs to your certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, cc := p.serverConfig(), p.clientConfig("p256")
			tt.setup(sc, cc)
			r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID)})
			wantRefusal(t, "board", r.serverErr, tt.code)
			wantPeerError(t, "student", r.clientErr, tt.code)
			var ref *wire.Refusal
			if errors.As(r.serverErr, &ref) && !strings.Contains(ref.Text, tt.text) {
				t.Errorf("refusal text %q does not contain %q", ref.Text, tt.text)
			}
			wantSID := testSID
			if tt.code == wire.CodeBadVersion { // refused before the hello is decoded
				wantSID = ""
			}
			wantHandshakeError(t, "board", r.serverErr, 3, wantSID)
			if r.sub != nil || r.receipt != nil {
				t.Errorf("a refused session produced a submission or a receipt")
			}
			if n := sc.Replays.Len(); n != 0 {
				t.Errorf("a refused hello is in the replay cache (%d hellos)", n)
			}
		})
	}
}

// wantHandshakeError checks that err is a *HandshakeError of step for sid.
func wantHandshakeError(t *testing.T, side string, err error, step int, sid string) *HandshakeError {
	t.Helper()
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Errorf("%s: got %T %v, want a *HandshakeError", side, err, err)
		return nil
	}
	if he.Step != step || he.SID != sid {
		t.Errorf("%s: got a HandshakeError of step %d for SID %q, want step %d for %q", side, he.Step, he.SID, step, sid)
	}
	if he.Error() != he.Err.Error() {
		t.Errorf("%s: HandshakeError says %q, its error %q", side, he.Error(), he.Err.Error())
	}
	if (he.Student != nil) != (step == 4) || he.Proven != (step == 4) {
		t.Errorf("%s: HandshakeError of step %d: Proven %v, carries the student's certificate %v", side, step, he.Proven, he.Student != nil)
	}
	return he
}

// failingReader is a source of randomness that has run dry.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no randomness") }

// TestHandshakeErrorAtStep4 checks that a board that fails after step 3
// passed reports step 4 with what step 3 established: the student's checked
// certificate and the suite chosen (the board's log shows STEP 3 then).
func TestHandshakeErrorAtStep4(t *testing.T) {
	p := pki(t)
	sc, cc := p.serverConfig(), p.clientConfig("p256")
	sc.Rand = failingReader{} // the board's random, the first draw of step 4, fails
	r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID)})
	if r.clientErr == nil {
		t.Error("the student established a session with a board that sent no ServerHello")
	}
	he := wantHandshakeError(t, "board", r.serverErr, 4, testSID)
	if he == nil || he.Student == nil {
		return
	}
	if he.Student.Subject.CommonName != testSID || he.Suite != SuiteAES256GCM {
		t.Errorf("step 4 failed with the certificate of %q and suite %s, want %q and %s",
			he.Student.Subject.CommonName, SuiteName(he.Suite), testSID, SuiteName(SuiteAES256GCM))
	}
}

// TestWrongPrivateKey plays a student, or an impostor, with the right
// certificate but another key: the hello's signature does not verify with
// the certificate's key (bad-hello-signature), and the board does nothing
// more for it.
func TestWrongPrivateKey(t *testing.T) {
	p := pki(t)
	for _, kt := range []string{"p256", "p384", "rsa2048"} {
		t.Run(kt, func(t *testing.T) {
			cc := p.clientConfig(kt)
			switch kt {
			case "p256":
				cc.Key = ecKey(elliptic.P256(), "impostor")
			case "p384":
				cc.Key = ecKey(elliptic.P384(), "impostor")
			default:
				cc.Key = rsaImpostor(t)
			}
			r := runSession(t, scenario{server: p.serverConfig(), client: cc, content: lab(testSID)})
			wantRefusal(t, "board", r.serverErr, wire.CodeBadHelloSignature)
			wantPeerError(t, "student", r.clientErr, wire.CodeBadHelloSignature)
			if r.sub != nil || r.receipt != nil {
				t.Errorf("the impostor's session produced a submission or a receipt")
			}
		})
	}
}

// TestKeyTransportFailed plays a board whose encrypted session key the
// student cannot open (key-transport-failed), and a student that carries on
// with a guess: the board's first record check fails (bad-record-mac).
func TestKeyTransportFailed(t *testing.T) {
	p := pki(t)
	garble := func(sh *wire.ServerHello) { sh.EncryptedKey[len(sh.EncryptedKey)-1] ^= 1 }
	sc, cc := p.serverConfig(), p.clientConfig("p256")
	sc.testHookServerHello = garble
	r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID)})
	wantRefusal(t, "student", r.clientErr, wire.CodeKeyTransportFailed)
	wantPeerError(t, "board", r.serverErr, wire.CodeKeyTransportFailed)

	sc = p.serverConfig()
	sc.testHookServerHello = garble
	cc.testHookIgnoreKeyTransport = true
	r = runSession(t, scenario{server: sc, client: cc, content: lab(testSID)})
	wantRefusal(t, "board", r.serverErr, wire.CodeBadRecordMAC)
	if r.sub != nil || r.receipt != nil {
		t.Errorf("a session with a garbled session key produced a submission or a receipt")
	}
}

var impostorRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// rsaImpostor returns an RSA key other than the student's.
func rsaImpostor(*testing.T) *rsa.PrivateKey { return impostorRSA() }

// TestStudentRefuses checks the refusals of step 5: the student returns a
// *wire.Refusal and the board learns the code from the student's plaintext
// Error when it reads the first record.
func TestStudentRefuses(t *testing.T) {
	p := pki(t)
	serverAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	boardFrom := func(ca *testCA, s certSpec) func(*ServerConfig, *ClientConfig) {
		if s.cn == "" {
			s.cn = testBoardName
		}
		if s.eku == nil {
			s.eku = serverAuth
		}
		s.key = p.board.key
		id := ca.issue(s)
		status := p.statusFor(t, id.leaf(), nil)
		return func(sc *ServerConfig, _ *ClientConfig) {
			sc.Certificate, sc.Key = id.leaf(), id.key
			sc.Status = func() []byte { return status }
		}
	}
	withServerHello := func(f func(*wire.ServerHello)) func(*ServerConfig, *ClientConfig) {
		return func(sc *ServerConfig, _ *ClientConfig) { sc.testHookServerHello = f }
	}
	// stapling makes a board (a rogue one) staple status.
	stapling := func(status []byte) func(*ServerConfig, *ClientConfig) {
		return withServerHello(func(sh *wire.ServerHello) { sh.Status = status })
	}
	status := func(change func(*wire.BoardStatus)) []byte { return p.boardStatus(t, change) }
	otherRootStatus := status(nil)
	if s, err := wire.ParseBoardStatus(otherRootStatus); err == nil {
		otherRootStatus = signStatus(t, s, p.other.key)
	}
	now := time.Now()
	tests := []struct {
		name   string
		setup  func(*ServerConfig, *ClientConfig)
		tamper tamperFunc
		code   wire.Code
	}{
		{"board from another root", boardFrom(p.other, certSpec{}), nil, wire.CodeUnknownCA},
		{"board certificate expired", boardFrom(p.root, certSpec{notAfter: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)}), nil, wire.CodeCertExpired},
		{"board with clientAuth only", boardFrom(p.root, certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}), nil, wire.CodeWrongUsage},
		{"board is a CA", boardFrom(p.root, certSpec{isCA: true}), nil, wire.CodeWrongUsage},
		{"board without extended key usage", boardFrom(p.root, certSpec{eku: []x509.ExtKeyUsage{}}), nil, wire.CodeWrongUsage},
		{"board with anyExtendedKeyUsage", boardFrom(p.root, certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}), nil, wire.CodeWrongUsage},
		{"wrong board name", func(_ *ServerConfig, cc *ClientConfig) { cc.BoardName = "otherboard" }, nil, wire.CodeNameMismatch},
		{"status that does not decode", stapling([]byte("not a status")), nil, wire.CodeStaleStatus},
		{"status signed by another root", stapling(otherRootStatus), nil, wire.CodeStaleStatus},
		{"status signed by the board itself", stapling(signStatus(t, mustParseStatus(t, status(nil)), p.board.key)), nil, wire.CodeStaleStatus},
		{"status for another serial", stapling(status(func(s *wire.BoardStatus) { s.Serial = []byte{0x77} })), nil, wire.CodeStaleStatus},
		{"status for another certificate", stapling(status(func(s *wire.BoardStatus) { s.CertSHA256[31] ^= 1 })), nil, wire.CodeStaleStatus},
		{"status says revoked", stapling(status(func(s *wire.BoardStatus) { s.Revoked = true })), nil, wire.CodeBoardRevoked},
		{"the board's own status says revoked", func(sc *ServerConfig, _ *ClientConfig) {
			revoked := status(func(s *wire.BoardStatus) { s.Revoked = true })
			sc.Status = func() []byte { return revoked }
		}, nil, wire.CodeBoardRevoked},
		{"status revoked and expired", stapling(status(func(s *wire.BoardStatus) {
			s.Revoked, s.NextUpdate = true, uint64(now.Add(-time.Hour).Unix())
		})), nil, wire.CodeBoardRevoked},
		{"status expired", stapling(status(func(s *wire.BoardStatus) {
			s.ThisUpdate, s.NextUpdate = uint64(now.Add(-2*time.Hour).Unix()), uint64(now.Add(-time.Hour).Unix())
		})), nil, wire.CodeStaleStatus},
		{"status not yet valid", stapling(status(func(s *wire.BoardStatus) { s.ThisUpdate = uint64(now.Add(time.Hour).Unix()) })),
			nil, wire.CodeStaleStatus},
		{"status older than one seen", func(_ *ServerConfig, cc *ClientConfig) { cc.MinCRLNumber = testCRLNumber + 1 },
			nil, wire.CodeStaleStatus},
		{"status changed on the way", nil, func(d direction, i int, f []byte) [][]byte {
			if d == s2c && i == 0 { // the status's signature is the ServerHello's last bytes
				f = bytes.Clone(f)
				f[len(f)-3] ^= 1
			}
			return [][]byte{f}
		}, wire.CodeStaleStatus},
		{"bad transcript signature", nil, func(d direction, i int, f []byte) [][]byte {
			if d == s2c && i == 1 { // ServerVerify: flip a byte of the signature
				f = bytes.Clone(f)
				f[len(f)-5] ^= 0x40
			}
			return [][]byte{f}
		}, wire.CodeBadTranscriptSignature},
		{"ServerHello changed on the way", nil, func(d direction, i int, f []byte) [][]byte {
			if d == s2c && i == 0 { // the board's random
				f = bytes.Clone(f)
				f[10] ^= 1
			}
			return [][]byte{f}
		}, wire.CodeBadTranscriptSignature},
		{"suite not offered", withServerHello(func(sh *wire.ServerHello) { sh.Suite = SuiteRC4HMACSHA256 }), nil, wire.CodeUnexpectedMessage},
		{"unknown suite", withServerHello(func(sh *wire.ServerHello) { sh.Suite = 0x0999 }), nil, wire.CodeUnexpectedMessage},
		{"key transport not for the key", withServerHello(func(sh *wire.ServerHello) { sh.KeyTransport = wire.KeyTransportRSAOAEP }), nil, wire.CodeUnexpectedMessage},
		{"session key garbled", withServerHello(func(sh *wire.ServerHello) { sh.EncryptedKey[len(sh.EncryptedKey)-1] ^= 1 }), nil, wire.CodeKeyTransportFailed},
		{"X-Wing ciphertext truncated", withServerHello(func(sh *wire.ServerHello) { sh.KEMCiphertext = sh.KEMCiphertext[:1119] }), nil, wire.CodeBadKeyShare},
		{"X-Wing ciphertext too long", withServerHello(func(sh *wire.ServerHello) { sh.KEMCiphertext = append(sh.KEMCiphertext, 0) }), nil, wire.CodeBadKeyShare},
		{"ServerHello version 2", nil, func(d direction, i int, f []byte) [][]byte {
			if d == s2c && i == 0 {
				f = bytes.Clone(f)
				f[2] = 2
			}
			return [][]byte{f}
		}, wire.CodeBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, cc := p.serverConfig(), p.clientConfig("p256")
			if tt.setup != nil {
				tt.setup(sc, cc)
			}
			r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID), tamper: tt.tamper})
			wantRefusal(t, "student", r.clientErr, tt.code)
			wantHandshakeError(t, "student", r.clientErr, 5, testSID)
			wantPeerError(t, "board", r.serverErr, tt.code)
			if r.sub != nil || r.receipt != nil {
				t.Errorf("a refused session produced a submission or a receipt")
			}
		})
	}
}

// mustParseStatus decodes a status of the tests.
func mustParseStatus(tb testing.TB, data []byte) *wire.BoardStatus {
	tb.Helper()
	s, err := wire.ParseBoardStatus(data)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestWrongKEMCiphertext checks PROTOCOL.md §5.1 on ML-KEM's implicit
// rejection: an X-Wing ciphertext of the right length but changed gives the
// student another pq secret without an error, so the handshake completes on
// both sides with different keys and the board refuses the student's first
// record, bad-record-mac. Nothing is stored.
func TestWrongKEMCiphertext(t *testing.T) {
	p := pki(t)
	sc := p.serverConfig()
	sc.testHookServerHello = func(sh *wire.ServerHello) { sh.KEMCiphertext[0] ^= 1 }
	r := runSession(t, scenario{server: sc, client: p.clientConfig("p256"), content: lab(testSID)})
	wantRefusal(t, "board", r.serverErr, wire.CodeBadRecordMAC)
	if r.student == nil {
		t.Errorf("the student refused the handshake (%v); ML-KEM should have rejected implicitly", r.clientErr)
	}
	if r.sub != nil || r.receipt != nil {
		t.Errorf("a session with a changed X-Wing ciphertext produced a submission or a receipt")
	}
}

// TestDowngrade plays an adversary who strips aes-256-ctr-hmac-sha256 from the
// student's offer, so that a board that allows RC4 would pick it: the
// student's signature over her hello covers the offer, so the board refuses
// the changed hello before it chooses anything (and the board's signature
// over the transcript would tell the student, too).
func TestDowngrade(t *testing.T) {
	p := pki(t)
	strip := func(d direction, i int, f []byte) [][]byte {
		if d != c2s || i != 0 {
			return [][]byte{f}
		}
		m, err := wire.Unmarshal(f)
		if err != nil {
			panic(err)
		}
		ch := m.(*wire.ClientHello)
		ch.Suites = slices.DeleteFunc(ch.Suites, func(s uint16) bool { return s == SuiteAES256CTRHMACSHA256 })
		out, err := wire.Marshal(ch)
		if err != nil {
			panic(err)
		}
		return [][]byte{out}
	}
	sc := p.serverConfig()
	sc.AllowRC4 = true
	cc := p.clientConfig("p256")
	cc.Suites = []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}
	var px *proxy
	r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID), tamper: strip, proxy: &px})
	wantRefusal(t, "board", r.serverErr, wire.CodeBadHelloSignature)
	wantPeerError(t, "student", r.clientErr, wire.CodeBadHelloSignature)

	// The board answered only its refusal: it chose no suite, sealed no key.
	out := px.frames(t, s2c)
	if len(out) != 1 {
		t.Fatalf("the board sent %d frames, want its Error alone", len(out))
	}
	if m, err := wire.Unmarshal(out[0]); err != nil || m.Type() != wire.TypeError {
		t.Errorf("the board's answer is %v (%v), want an Error", m, err)
	}
}

// TestHandshakeDeadline checks that a silent peer does not hold the board
// beyond the deadline its caller set.
func TestHandshakeDeadline(t *testing.T) {
	p := pki(t)
	ln := listen(t)
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		c := wire.NewConn(nc, wire.Options{MaxFrame: boardMaxFrame})
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = Server(c, p.serverConfig())
		done <- err
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	select {
	case err := <-done:
		if wire.CodeOf(err) != wire.CodeTimeout {
			t.Errorf("got %v, want a timeout", err)
		}
	case <-time.After(testWaitDeadline):
		t.Fatal("Server did not return after its deadline")
	}
}

// TestConfigErrors checks that a misconfigured side fails before it sends
// anything.
func TestConfigErrors(t *testing.T) {
	p := pki(t)
	small := wire.NewConn(newMemConn(nil), wire.Options{MaxFrame: 64 << 10})
	if _, err := Server(small, p.serverConfig()); err == nil || !strings.Contains(err.Error(), "max_frame") {
		t.Errorf("Server over a 64 KiB frame limit: got %v, want an error about max_frame", err)
	}
	for name, mod := range map[string]func(*ServerConfig){
		"no certificate":  func(c *ServerConfig) { c.Certificate = nil },
		"no key":          func(c *ServerConfig) { c.Key = nil },
		"no root":         func(c *ServerConfig) { c.Root = nil },
		"no status":       func(c *ServerConfig) { c.Status = nil },
		"no replay cache": func(c *ServerConfig) { c.Replays = nil },
		"negative window": func(c *ServerConfig) { c.HelloWindow = -time.Second },
		"key of another":  func(c *ServerConfig) { c.Key = p.keys["p256"] },
	} {
		sc := p.serverConfig()
		mod(sc)
		m := newMemConn(nil)
		if _, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc); err == nil || m.out.Len() != 0 {
			t.Errorf("%s: Server gave %v and wrote %d bytes, want an error and nothing written", name, err, m.out.Len())
		}
	}
	for name, mod := range map[string]func(*ClientConfig){
		"no SID":         func(c *ClientConfig) { c.SID = "" },
		"no board name":  func(c *ClientConfig) { c.BoardName = "" },
		"unknown suite":  func(c *ClientConfig) { c.Suites = []uint16{9} },
		"Ed25519 key":    func(c *ClientConfig) { c.Key = ed25519Key() },
		"no root":        func(c *ClientConfig) { c.Root = nil },
		"no certificate": func(c *ClientConfig) { c.Certificate = nil },
	} {
		cc := p.clientConfig("p256")
		mod(cc)
		m := newMemConn(nil)
		if _, err := Client(wire.NewConn(m, wire.Options{}), cc); err == nil || m.out.Len() != 0 {
			t.Errorf("%s: Client gave %v and wrote %d bytes, want an error and nothing written", name, err, m.out.Len())
		}
	}
}
