package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// brokenSignature returns der with one bit flipped near its end: inside the
// signature value, which ends a DER CSR. The result still parses.
func brokenSignature(t *testing.T, der []byte) []byte {
	t.Helper()
	bad := slices.Clone(der)
	bad[len(bad)-5] ^= 0x01
	if _, err := x509.ParseCertificateRequest(bad); err != nil {
		t.Fatalf("the CSR with a broken signature does not parse: %v", err)
	}
	return bad
}

// TestEnrollRefusals sends one bad request per row to a CA with the token
// policy and a roster, and checks the refusal's code, that it is recorded,
// and that a good request still succeeds after it.
func TestEnrollRefusals(t *testing.T) {
	roster := "# course roster\n1155000001\n1155000002  # late joiner\n\n1155000003\n"
	tc := newCA(t, func(o *Options) {
		o.Policy = PolicyToken
		o.RosterFile = writeFile(t, t.TempDir(), "roster.txt", []byte(roster))
	})
	ctx := context.Background()
	p256 := fixtureCSR(t, "p256.csr")
	boardCSR := fixtureCSR(t, "board.csr")
	token := func(sid string) string {
		tok, _, err := tc.CreateToken(sid, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	student := func(csr []byte, sid, tok string) Request {
		return Request{Profile: wire.ProfileStudent, SID: sid, CSR: csr, Token: tok, Peer: "192.0.2.1:4000"}
	}
	board := func(csr []byte, sid, tok string) Request {
		return Request{Profile: wire.ProfileBoard, SID: sid, CSR: csr, Token: tok, Peer: "192.0.2.2:4000"}
	}

	tests := []struct {
		name     string
		req      func(t *testing.T) Request
		code     wire.Code
		wantText string // a substring of the refusal's text
	}{
		{"garbage", func(*testing.T) Request { return student([]byte("not a CSR"), testSID, token(testSID)) }, wire.CodeBadCSR, "not a PKCS#10"},
		{"empty CSR", func(*testing.T) Request { return student(nil, testSID, token(testSID)) }, wire.CodeBadCSR, "0 bytes"},
		{"PEM instead of DER", func(*testing.T) Request {
			data, _ := os.ReadFile(filepath.Join("testdata", "p256.csr"))
			return student(data, testSID, token(testSID))
		}, wire.CodeBadCSR, "PEM text"},
		{"trailing bytes", func(*testing.T) Request { return student(append(slices.Clone(p256), 0), testSID, token(testSID)) }, wire.CodeBadCSR, ""},
		{"broken signature", func(t *testing.T) Request { return student(brokenSignature(t, p256), testSID, token(testSID)) }, wire.CodeBadCSRSignature, "private key you hold"},
		{"RSA-1024", func(*testing.T) Request { return student(fixtureCSR(t, "rsa1024.csr"), testSID, token(testSID)) }, wire.CodeWeakKey, "RSA-1024"},
		{"P-521", func(*testing.T) Request { return student(fixtureCSR(t, "p521.csr"), testSID, token(testSID)) }, wire.CodeWeakKey, "P-521"},
		{"P-224", func(*testing.T) Request { return student(fixtureCSR(t, "p224.csr"), testSID, token(testSID)) }, wire.CodeWeakKey, "P-224"},
		{"Ed25519", func(*testing.T) Request { return student(fixtureCSR(t, "ed25519.csr"), testSID, token(testSID)) }, wire.CodeWeakKey, "Ed25519"},
		{"SID fails the pattern", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), "alice"), "alice", "") }, wire.CodeBadSID, `"alice"`},
		{"SID too long", func(t *testing.T) Request { return student(p256, strings.Repeat("1", 65), "") }, wire.CodeBadSID, ""},
		{"CN is someone else", func(*testing.T) Request { return student(fixtureCSR(t, "cn-someoneelse.csr"), testSID, token(testSID)) },
			wire.CodeCNMismatch, `the CSR's subject is "CN=someoneelse" but the request is for SID "1155000001"; make the CSR with the subject CN=1155000001`},
		{"subject with O=", func(*testing.T) Request { return student(fixtureCSR(t, "extra-o.csr"), testSID, token(testSID)) }, wire.CodeCNMismatch, `"CN=1155000001,O=CUHK"`},
		{"empty subject", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), ""), testSID, token(testSID)) }, wire.CodeCNMismatch, "subject is empty"},
		{"CN differs in case", func(t *testing.T) Request {
			return student(makeCSR(t, newKey(t), "blackboard"), testSID, token(testSID))
		}, wire.CodeCNMismatch, ""},
		{"not on roster", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), "1155000009"), "1155000009", "") }, wire.CodeNotOnRoster, "roster"},
		{"token missing", func(*testing.T) Request { return student(p256, testSID, "") }, wire.CodeTokenRequired, "ask the course staff"},
		{"token wrong", func(*testing.T) Request { return student(p256, testSID, "pkbt_"+strings.Repeat("A", 43)) }, wire.CodeTokenInvalid, "not one the CA issued"},
		{"token for another SID", func(*testing.T) Request { return student(p256, testSID, token("1155000002")) }, wire.CodeTokenInvalid, "not one the CA issued"},
		{"board token used by a student", func(*testing.T) Request {
			tok, _, err := tc.CreateBoardToken(0)
			if err != nil {
				t.Fatal(err)
			}
			return student(p256, testSID, tok)
		}, wire.CodeTokenInvalid, ""},
		{"token expired", func(*testing.T) Request {
			tok, _, err := tc.CreateToken(testSID, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			tc.clock.Add(time.Minute)
			return student(p256, testSID, tok)
		}, wire.CodeTokenExpired, "expired at"},
		{"token reused", func(t *testing.T) Request {
			tok := token(testSID)
			if _, err := tc.Enroll(ctx, student(p256, testSID, tok)); err != nil {
				t.Fatal(err)
			}
			return student(p256, testSID, tok)
		}, wire.CodeTokenUsed, "already used at"},
		{"profile 0", func(*testing.T) Request { r := student(p256, testSID, ""); r.Profile = 0; return r }, wire.CodeBadProfile, "profile 0"},
		{"profile 3", func(*testing.T) Request { r := student(p256, testSID, ""); r.Profile = 3; return r }, wire.CodeBadProfile, "profile 3"},
		{"board name wrong", func(t *testing.T) Request {
			return board(makeCSR(t, newKey(t), "whiteboard"), "whiteboard", tc.boardSecret(t))
		}, wire.CodeBoardNotAuthorized, `"whiteboard"`},
		{"board secret wrong", func(*testing.T) Request { return board(boardCSR, testBoard, "pkbb_"+strings.Repeat("A", 43)) }, wire.CodeBoardNotAuthorized, "neither the board enrollment secret"},
		{"board secret missing", func(*testing.T) Request { return board(boardCSR, testBoard, "") }, wire.CodeBoardNotAuthorized, BoardSecretFile},
		{"board secret as a student token", func(*testing.T) Request { return student(p256, testSID, tc.boardSecret(t)) }, wire.CodeTokenInvalid, ""},
		{"student token for the board", func(*testing.T) Request { return board(boardCSR, testBoard, token(testSID)) }, wire.CodeBoardNotAuthorized, ""},
		{"board token expired", func(*testing.T) Request {
			tok, _, err := tc.CreateBoardToken(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tc.clock.Add(time.Second)
			return board(boardCSR, testBoard, tok)
		}, wire.CodeBoardNotAuthorized, "expired at"},
		{"board token reused", func(t *testing.T) Request {
			tok, _, err := tc.CreateBoardToken(0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tc.Enroll(ctx, board(boardCSR, testBoard, tok)); err != nil {
				t.Fatal(err)
			}
			return board(boardCSR, testBoard, tok)
		}, wire.CodeBoardNotAuthorized, "already used at"},
		{"board with a student CSR", func(*testing.T) Request { return board(p256, testBoard, tc.boardSecret(t)) }, wire.CodeCNMismatch, ""},
		// The checks run in PROTOCOL.md's order: the first failure decides.
		{"order: bad signature before weak key", func(t *testing.T) Request {
			return student(brokenSignature(t, fixtureCSR(t, "rsa1024.csr")), "bad sid", "")
		}, wire.CodeBadCSRSignature, ""},
		{"order: weak key before bad SID", func(*testing.T) Request { return student(fixtureCSR(t, "p521.csr"), "bad sid", "") }, wire.CodeWeakKey, ""},
		{"order: bad SID before CN", func(*testing.T) Request { return student(p256, "bad sid", "") }, wire.CodeBadSID, ""},
		{"order: CN before roster", func(*testing.T) Request { return student(p256, "1155000009", "") }, wire.CodeCNMismatch, ""},
		{"order: roster before token", func(t *testing.T) Request {
			return student(makeCSR(t, newKey(t), "1155000009"), "1155000009", "wrong")
		}, wire.CodeNotOnRoster, ""},
		{"order: profile before CSR", func(*testing.T) Request { return Request{Profile: 9, SID: "x", CSR: []byte("junk")} }, wire.CodeBadProfile, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req(t)
			_, err := tc.Enroll(ctx, req)
			r := wantRefusal(t, err, tt.code)
			t.Logf("%s: %s", r.Code, r.Text)
			if !strings.Contains(r.Text, tt.wantText) {
				t.Errorf("text %q does not contain %q", r.Text, tt.wantText)
			}
			if req.Token != "" && strings.Contains(r.Text, req.Token) {
				t.Errorf("the refusal repeats the token: %q", r.Text)
			}
			if len(r.Text) > 1024 {
				t.Errorf("text of %d bytes is longer than an Error message allows", len(r.Text))
			}
			ds, err := tc.Decisions(1)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].Accepted || ds[0].Code != tt.code || ds[0].Reason != r.Text || ds[0].Peer != req.Peer {
				t.Errorf("last decision: got %+v want a refusal %s", ds, tt.code)
			}
			// A good request still succeeds.
			if _, err := tc.enroll(t, "1155000003", token("1155000003")); err != nil {
				t.Fatalf("good enrollment after the refusal: %v", err)
			}
		})
	}
}

func TestEnrollOpenPolicy(t *testing.T) {
	tc := newCA(t, nil)
	tests := []struct {
		fixture string
		key     string
	}{
		{"rsa2048.csr", "RSA-2048"},
		{"p256.csr", "ECDSA P-256"},
		{"p384.csr", "ECDSA P-384"},
		{"ca-request.csr", "ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			iss, err := tc.Enroll(t.Context(), Request{Profile: wire.ProfileStudent, SID: testSID, CSR: fixtureCSR(t, tt.fixture), Token: "ignored"})
			if err != nil {
				t.Fatal(err)
			}
			if got := keys.Describe(iss.Certificate.PublicKey); got != tt.key {
				t.Errorf("key: got %s want %s", got, tt.key)
			}
		})
	}
}

// TestIssuedCertificate checks everything in an issued certificate.
func TestIssuedCertificate(t *testing.T) {
	tc := newCA(t, nil)
	root := tc.Root()
	tests := []struct {
		name    string
		profile uint8
		sid     string
		csr     string
		ku      x509.KeyUsage
		eku     x509.ExtKeyUsage
	}{
		{"student P-256", wire.ProfileStudent, testSID, "p256.csr", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, x509.ExtKeyUsageClientAuth},
		{"student P-384", wire.ProfileStudent, testSID, "p384.csr", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, x509.ExtKeyUsageClientAuth},
		{"student RSA", wire.ProfileStudent, testSID, "rsa2048.csr", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, x509.ExtKeyUsageClientAuth},
		{"CSR asking for a CA", wire.ProfileStudent, testSID, "ca-request.csr", x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, x509.ExtKeyUsageClientAuth},
		{"board", wire.ProfileBoard, testBoard, "board.csr", x509.KeyUsageDigitalSignature, x509.ExtKeyUsageServerAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csrDER := fixtureCSR(t, tt.csr)
			csr, err := x509.ParseCertificateRequest(csrDER)
			if err != nil {
				t.Fatal(err)
			}
			token := ""
			if tt.profile == wire.ProfileBoard {
				token = tc.boardSecret(t)
			}
			iss, err := tc.Enroll(t.Context(), Request{Profile: tt.profile, SID: tt.sid, CSR: csrDER, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			cert := iss.Certificate
			if string(iss.PEM) != string(keys.EncodeCertificatePEM(cert.Raw)) {
				t.Error("PEM does not hold the certificate")
			}
			wantSubject, _ := asn1.Marshal(pkix.Name{CommonName: tt.sid}.ToRDNSequence())
			ski, err := subjectKeyID(csr.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			var exts []string
			for _, e := range cert.Extensions {
				exts = append(exts, e.Id.String())
			}
			slices.Sort(exts)
			wantExts := []string{oidSKI.String(), oidKeyUsage.String(), oidBasicConstraints.String(), oidAKI.String(), oidExtKeyUsage.String()}
			slices.Sort(wantExts)
			serialDER, _ := asn1.Marshal(cert.SerialNumber)
			checks := []struct {
				what      string
				got, want any
			}{
				{"subject DER", string(cert.RawSubject), string(wantSubject)},
				{"issuer", string(cert.RawIssuer), string(root.RawSubject)},
				{"key", keys.SamePublicKey(cert.PublicKey, csr.PublicKey), true},
				{"basic constraints valid", cert.BasicConstraintsValid, true},
				{"CA", cert.IsCA, false},
				{"basicConstraints critical", extension(t, cert, oidBasicConstraints).Critical, true},
				{"key usage", cert.KeyUsage, tt.ku},
				{"keyUsage critical", extension(t, cert, oidKeyUsage).Critical, true},
				{"EKU", slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{tt.eku}), true},
				{"unknown EKU", len(cert.UnknownExtKeyUsage), 0},
				{"extensions (CSR's ignored)", strings.Join(exts, " "), strings.Join(wantExts, " ")},
				{"SANs", len(cert.DNSNames) + len(cert.EmailAddresses) + len(cert.IPAddresses) + len(cert.URIs), 0},
				{"SKI", string(cert.SubjectKeyId), string(ski)},
				{"AKI is root SKI", string(cert.AuthorityKeyId), string(root.SubjectKeyId)},
				{"serial positive", cert.SerialNumber.Sign(), 1},
				{"serial DER at most 20 bytes", len(serialDER)-2 <= 20, true},
				{"not before backdated", cert.NotBefore, t0.Add(-time.Minute)},
				{"not after", cert.NotAfter, t0.Add(tc.opts.CertValidity)},
				{"signature", cert.SignatureAlgorithm, x509.ECDSAWithSHA256},
				{"version", cert.Version, 3},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v want %v", c.what, c.got, c.want)
				}
			}
			if err := cert.CheckSignatureFrom(root); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestNotAfterCappedAtRoot issues near the end of the root's life.
func TestNotAfterCappedAtRoot(t *testing.T) {
	tc := newCA(t, func(o *Options) {
		o.RootValidity = 48 * time.Hour
		o.CertValidity = 24 * time.Hour
	})
	tc.clock.Add(30 * time.Hour)
	iss := tc.mustEnroll(t, testSID, "")
	if !iss.Certificate.NotAfter.Equal(tc.Root().NotAfter) {
		t.Errorf("notAfter %s, want the root's %s", iss.Certificate.NotAfter, tc.Root().NotAfter)
	}
}

func TestSerialCollisionDrawsAgain(t *testing.T) {
	// The random source repeats its first 16 bytes once: the second
	// enrollment's first serial collides with the first's.
	seq := []byte{}
	for i := range 16 {
		seq = append(seq, byte(i+1))
	}
	seq = append(seq, seq...)
	for i := range 16 {
		seq = append(seq, byte(0x40+i))
	}
	tc := newCA(t, nil)
	tc.o.Rand = &sequenceReader{data: seq}
	a := tc.mustEnroll(t, testSID, "")
	b := tc.mustEnroll(t, testSID, "")
	if a.Certificate.SerialNumber.Cmp(b.Certificate.SerialNumber) == 0 {
		t.Fatal("two certificates share a serial")
	}
	if want := new(big.Int).SetBytes(seq[32:48]); b.Certificate.SerialNumber.Cmp(want) != 0 {
		t.Errorf("second serial %X, want %X", b.Certificate.SerialNumber, want)
	}
	if len(tc.logs.FilterMessageSnippet("serial already issued").All()) != 1 {
		t.Error("no log of the collision")
	}
}

// sequenceReader returns data, then fails.
type sequenceReader struct{ data []byte }

func (r *sequenceReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, os.ErrClosed
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestBoardNameReserved: with a SID pattern the board's name matches, a
// student still cannot take that name.
func TestBoardNameReserved(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.SIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`) })
	_, err := tc.enroll(t, testBoard, "")
	if r := wantRefusal(t, err, wire.CodeBadSID); !strings.Contains(r.Text, "reserved for the board") {
		t.Errorf("text %q", r.Text)
	}
	if _, _, err := tc.CreateToken(testBoard, 0); err == nil {
		t.Error("CreateToken made a student token for the board's name")
	}
	tc.mustEnroll(t, "alice", "")
}

func TestCheckKey(t *testing.T) {
	rsaBits := func(n int) *rsa.PublicKey {
		return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(n-1)), E: 65537}
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		pub  any
		ok   bool
	}{
		{"RSA-2047", rsaBits(2047), false},
		{"RSA-2048", rsaBits(2048), true},
		{"RSA-8192", rsaBits(8192), true},
		{"RSA-8193", rsaBits(8193), false},
		{"P-256", p256.Public(), true},
		{"something else", "a string", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkKey(tt.pub)
			if (r == nil) != tt.ok {
				t.Errorf("got %v want ok=%v", r, tt.ok)
			}
			if r != nil && r.Code != wire.CodeWeakKey {
				t.Errorf("code %s want weak-key", r.Code)
			}
		})
	}
}

func TestRoster(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "roster.txt", []byte("1155000001\n"))
	tc := newCA(t, func(o *Options) { o.RosterFile = path })
	if _, err := tc.enroll(t, "1155000002", ""); err == nil {
		t.Fatal("SID not on the roster enrolled")
	} else {
		wantRefusal(t, err, wire.CodeNotOnRoster)
	}
	if _, _, err := tc.CreateToken("1155000002", 0); err == nil || !strings.Contains(err.Error(), "not on the roster") {
		t.Errorf("CreateToken for a SID not on the roster: got %v", err)
	}
	// The file changes: it is read again.
	writeFile(t, dir, "roster.txt", []byte("# two now\n1155000001\n   1155000002   # added\n\n"))
	tc.mustEnroll(t, "1155000002", "")
	// A bad line: the last good roster stays.
	writeFile(t, dir, "roster.txt", []byte("1155000001\nnot-a-sid\n"))
	tc.mustEnroll(t, "1155000002", "")
	if len(tc.logs.FilterMessageSnippet("changed roster was not taken").All()) != 1 {
		t.Error("no warning about the bad roster")
	}
	// The file is gone: the last good roster stays.
	os.Remove(path)
	tc.mustEnroll(t, "1155000002", "")
	// A bad roster at Open is an error naming the line.
	writeFile(t, dir, "roster.txt", []byte("1155000001\n\nnot-a-sid\n"))
	o := testOptions(t, newClock())
	o.RosterFile = path
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Open with a bad roster: got %v want an error naming line 3", err)
	}
}

func TestCreateToken(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok, expires, err := tc.CreateToken(testSID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "pkbt_") || len(tok) != 5+43 {
		t.Errorf("token %q has the wrong form", tok)
	}
	if !expires.Equal(t0.Add(tc.opts.TokenTTL)) {
		t.Errorf("expires %s want %s", expires, t0.Add(tc.opts.TokenTTL))
	}
	if _, _, err := tc.CreateToken("alice", 0); err == nil {
		t.Error("token for a SID that fails the pattern")
	}
	if _, _, err := tc.CreateToken(testSID, -time.Hour); err == nil {
		t.Error("token with a negative lifetime")
	}
	// Only the hash is stored.
	tc.Close()
	data, err := os.ReadFile(filepath.Join(tc.opts.Dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), tok) || strings.Contains(string(data), tok[5:]) {
		t.Error("the store holds the token itself")
	}
}

// TestLogsHoldNoSecrets enrolls with tokens and the board secret, succeeding
// and failing, and searches every log entry for them.
func TestLogsHoldNoSecrets(t *testing.T) {
	pass := []byte("the root passphrase")
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken; o.Passphrase = pass })
	secret := tc.boardSecret(t)
	var secrets []string
	tok, _, err := tc.CreateToken(testSID, 0)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, tok, secret, string(pass))
	tc.mustEnroll(t, testSID, tok)
	tc.enroll(t, testSID, tok)
	tc.enroll(t, testSID, tok+"x")
	btok, _, err := tc.CreateBoardToken(0)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, btok)
	for _, token := range []string{secret, btok, btok, secret + "x"} {
		tc.Enroll(t.Context(), Request{Profile: wire.ProfileBoard, SID: testBoard, CSR: fixtureCSR(t, "board.csr"), Token: token})
	}
	entries := tc.logs.All()
	tc = tc.reopen(t)
	entries = append(entries, tc.logs.All()...)
	if len(entries) == 0 {
		t.Fatal("nothing logged")
	}
	for _, e := range entries {
		text := e.Message
		for k, v := range e.ContextMap() {
			text += " " + k + "=" + toString(v)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("log entry %q contains a secret", text)
			}
		}
		if strings.Contains(text, "pkbt_") || strings.Contains(text, "pkbb_") {
			t.Errorf("log entry %q contains a token", text)
		}
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}
