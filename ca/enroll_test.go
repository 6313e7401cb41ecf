package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/asn1"
	"encoding/base64"
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
// policy and a roster, and checks the refusal's code; that it is stored only
// when the peer proved possession of a token or a certificate, and counted
// otherwise; and that a good request still succeeds after it.
func TestEnrollRefusals(t *testing.T) {
	roster := "# course roster\n1155000001\n1155000002  # late joiner\n\n1155000003\n"
	tc := newCA(t, func(o *Options) {
		o.Policy = PolicyToken
		o.RosterFile = writeFile(t, t.TempDir(), "roster.txt", []byte(roster))
	})
	ctx := context.Background()
	p256 := fixtureCSR(t, "p256.csr")
	boardCSR := fixtureCSR(t, "board.csr")
	bogus := "pkbt_" + strings.Repeat("A", 43) // a well-formed token the CA never made
	student := func(csr []byte, sid, tok string) Request { return tc.req(t, wire.ProfileStudent, sid, csr, tok) }
	board := func(csr []byte, sid, tok string) Request { return tc.req(t, wire.ProfileBoard, sid, csr, tok) }
	wrongRoot := func(r Request) Request {
		r.Root[0] ^= 1
		return r
	}
	// fresh returns a valid student certificate and its key, to renew.
	fresh := func(t *testing.T) (*x509.Certificate, crypto.Signer) {
		iss, key, err := tc.enrollKey(t, wire.ProfileStudent, "1155000002", tc.token(t, "1155000002"))
		if err != nil {
			t.Fatal(err)
		}
		return iss.Certificate, key
	}
	renewal := func(csr []byte, sid string, cert *x509.Certificate, key crypto.Signer) Request {
		r := student(csr, sid, "")
		signRenewal(t, &r, cert, key)
		return r
	}

	tests := []struct {
		name     string
		req      func(t *testing.T) Request
		code     wire.Code
		wantText string // a substring of the refusal's text
		proven   bool   // the peer passed step 6: the refusal is stored
	}{
		{"garbage", func(*testing.T) Request { return student([]byte("not a CSR"), testSID, tc.token(t, testSID)) }, wire.CodeBadCSR, "not a PKCS#10", true},
		{"empty CSR", func(*testing.T) Request { return student(nil, testSID, tc.token(t, testSID)) }, wire.CodeBadCSR, "0 bytes", true},
		{"PEM instead of DER", func(*testing.T) Request {
			data, _ := os.ReadFile(filepath.Join("testdata", "p256.csr"))
			return student(data, testSID, tc.token(t, testSID))
		}, wire.CodeBadCSR, "PEM text", true},
		{"trailing bytes", func(*testing.T) Request { return student(append(slices.Clone(p256), 0), testSID, tc.token(t, testSID)) }, wire.CodeBadCSR, "", true},
		{"broken signature", func(t *testing.T) Request { return student(brokenSignature(t, p256), testSID, tc.token(t, testSID)) }, wire.CodeBadCSRSignature, "private key you hold", true},
		{"RSA-1024", func(*testing.T) Request { return student(fixtureCSR(t, "rsa1024.csr"), testSID, tc.token(t, testSID)) }, wire.CodeWeakKey, "RSA-1024", true},
		{"P-521", func(*testing.T) Request { return student(fixtureCSR(t, "p521.csr"), testSID, tc.token(t, testSID)) }, wire.CodeWeakKey, "P-521", true},
		{"P-224", func(*testing.T) Request { return student(fixtureCSR(t, "p224.csr"), testSID, tc.token(t, testSID)) }, wire.CodeWeakKey, "P-224", true},
		{"Ed25519", func(*testing.T) Request { return student(fixtureCSR(t, "ed25519.csr"), testSID, tc.token(t, testSID)) }, wire.CodeWeakKey, "Ed25519", true},
		{"SID fails the pattern", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), "alice"), "alice", bogus) }, wire.CodeBadSID, `"alice"`, false},
		{"SID too long", func(t *testing.T) Request { return student(p256, strings.Repeat("1", 65), bogus) }, wire.CodeBadSID, "", false},
		{"CN is someone else", func(*testing.T) Request {
			return student(fixtureCSR(t, "cn-someoneelse.csr"), testSID, tc.token(t, testSID))
		},
			wire.CodeCNMismatch, `the CSR's subject is "CN=someoneelse" but the request is for SID "1155000001"; make the CSR with the subject CN=1155000001`, true},
		{"subject with O=", func(*testing.T) Request { return student(fixtureCSR(t, "extra-o.csr"), testSID, tc.token(t, testSID)) }, wire.CodeCNMismatch, `"CN=1155000001,O=CUHK"`, true},
		{"empty subject", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), ""), testSID, tc.token(t, testSID)) }, wire.CodeCNMismatch, "subject is empty", true},
		{"CN differs", func(t *testing.T) Request {
			return student(makeCSR(t, newKey(t), "blackboard"), testSID, tc.token(t, testSID))
		}, wire.CodeCNMismatch, "", true},
		{"not on roster", func(t *testing.T) Request { return student(makeCSR(t, newKey(t), "1155000009"), "1155000009", bogus) }, wire.CodeNotOnRoster, "roster", false},
		{"token missing", func(*testing.T) Request { return student(p256, testSID, "") }, wire.CodeTokenRequired, "ask the course staff", false},
		{"token unknown", func(*testing.T) Request { return student(p256, testSID, bogus) }, wire.CodeTokenInvalid, "not one the CA issued", false},
		{"token for another SID", func(*testing.T) Request { return student(p256, testSID, tc.token(t, "1155000003")) }, wire.CodeTokenInvalid, "not one the CA issued", false},
		{"token signature over another CSR", func(t *testing.T) Request {
			r := student(p256, testSID, tc.token(t, testSID))
			r.CSR = makeCSR(t, newKey(t), testSID) // a thief's CSR under her signature
			return r
		}, wire.CodeTokenInvalid, "signature does not verify", false},
		{"token signature for another SID", func(t *testing.T) Request {
			r := student(makeCSR(t, newKey(t), "1155000003"), "1155000003", tc.token(t, testSID))
			return r
		}, wire.CodeTokenInvalid, "", false},
		{"token cancelled", func(t *testing.T) Request {
			tok := tc.token(t, testSID)
			cancelToken(t, tc, tok)
			return student(p256, testSID, tok)
		}, wire.CodeTokenInvalid, "cancelled", false},
		{"board token used by a student", func(*testing.T) Request { return student(p256, testSID, tc.boardToken(t)) }, wire.CodeTokenInvalid, "", false},
		{"token expired", func(*testing.T) Request {
			tok, _, err := tc.CreateToken(testSID, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			tc.clock.Add(time.Minute)
			return student(p256, testSID, tok)
		}, wire.CodeTokenExpired, "expired at", false},
		{"token used for another key", func(t *testing.T) Request {
			tok := tc.token(t, testSID)
			if _, err := tc.Enroll(ctx, student(makeCSR(t, newKey(t), testSID), testSID, tok)); err != nil {
				t.Fatal(err)
			}
			return student(p256, testSID, tok)
		}, wire.CodeTokenUsed, "already used at", true},
		{"profile 0", func(*testing.T) Request { r := student(p256, testSID, ""); r.Profile = 0; return r }, wire.CodeBadProfile, "profile 0", false},
		{"profile 3", func(*testing.T) Request { r := student(p256, testSID, ""); r.Profile = 3; return r }, wire.CodeBadProfile, "profile 3", false},
		{"auth 3", func(*testing.T) Request { r := student(p256, testSID, ""); r.Auth = 3; return r }, wire.CodeMalformed, "auth 3", false},
		{"wrong root", func(*testing.T) Request {
			r := student(p256, testSID, "")
			r.Root[0] ^= 1
			signToken(t, &r, tc.token(t, testSID))
			return r
		}, wire.CodeWrongRoot, "nothing was spent", false},
		{"board name wrong", func(t *testing.T) Request {
			return board(makeCSR(t, newKey(t), "whiteboard"), "whiteboard", tc.boardToken(t))
		}, wire.CodeBoardNotAuthorized, `"whiteboard"`, false},
		{"board token unknown", func(*testing.T) Request { return board(boardCSR, testBoard, bogus) }, wire.CodeTokenInvalid, "board", false},
		{"board token missing", func(*testing.T) Request { return board(boardCSR, testBoard, "") }, wire.CodeBoardNotAuthorized, BoardTokenFile, false},
		{"student token for the board", func(*testing.T) Request { return board(boardCSR, testBoard, tc.token(t, testSID)) }, wire.CodeTokenInvalid, "", false},
		{"board token expired", func(*testing.T) Request {
			tok, _, err := tc.CreateBoardToken(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tc.clock.Add(time.Second)
			return board(boardCSR, testBoard, tok)
		}, wire.CodeTokenExpired, "expired at", false},
		{"board token used for another key", func(t *testing.T) Request {
			tok := tc.boardToken(t)
			if _, err := tc.Enroll(ctx, board(makeCSR(t, newKey(t), testBoard), testBoard, tok)); err != nil {
				t.Fatal(err)
			}
			return board(boardCSR, testBoard, tok)
		}, wire.CodeTokenUsed, "already used at", true},
		{"board with a student CSR", func(*testing.T) Request { return board(p256, testBoard, tc.boardToken(t)) }, wire.CodeCNMismatch, "", true},
		// Renewals.
		{"renewal of garbage", func(t *testing.T) Request {
			r := student(p256, testSID, "")
			r.Auth, r.Certificate, r.Signature = wire.AuthRenewal, []byte("junk"), []byte("sig")
			return r
		}, wire.CodeBadRenewal, "does not parse", false},
		{"renewal of another CA's certificate", func(t *testing.T) Request {
			other := newCA(t, nil)
			iss, key, err := other.enrollKey(t, wire.ProfileStudent, testSID, "")
			if err != nil {
				t.Fatal(err)
			}
			return renewal(p256, testSID, iss.Certificate, key)
		}, wire.CodeBadRenewal, "not one this CA issued", false},
		{"renewal signed by another key", func(t *testing.T) Request {
			cert, _ := fresh(t)
			return renewal(makeCSR(t, newKey(t), "1155000002"), "1155000002", cert, newKey(t))
		}, wire.CodeBadRenewal, "does not verify", false},
		{"renewal for another SID", func(t *testing.T) Request {
			cert, key := fresh(t)
			return renewal(p256, testSID, cert, key)
		}, wire.CodeBadRenewal, "a renewal keeps the name", false},
		{"renewal as the board", func(t *testing.T) Request {
			r := board(boardCSR, testBoard, "")
			cert, key := fresh(t)
			signRenewal(t, &r, cert, key)
			return r
		}, wire.CodeBadRenewal, "a renewal keeps the name", false},
		{"renewal of a revoked certificate", func(t *testing.T) Request {
			iss, key, err := tc.enrollKey(t, wire.ProfileStudent, testSID, tc.token(t, testSID))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tc.Revoke(t.Context(), iss.Certificate.SerialNumber, ReasonKeyCompromise); err != nil {
				t.Fatal(err)
			}
			return renewal(makeCSR(t, newKey(t), testSID), testSID, iss.Certificate, key)
		}, wire.CodeBadRenewal, "keyCompromise", false},
		{"renewal of an expired certificate", func(t *testing.T) Request {
			iss, key, err := tc.enrollKey(t, wire.ProfileStudent, testSID, tc.token(t, testSID))
			if err != nil {
				t.Fatal(err)
			}
			tc.clock.Add(tc.opts.CertValidity + time.Second)
			return renewal(makeCSR(t, newKey(t), testSID), testSID, iss.Certificate, key)
		}, wire.CodeBadRenewal, "not valid now", false},
		{"renewal to the same key", func(t *testing.T) Request {
			cert, key := fresh(t)
			return renewal(makeCSR(t, key, "1155000002"), "1155000002", cert, key)
		}, wire.CodeSameKey, "new key pair", true},
		{"renewal of a certificate already renewed", func(t *testing.T) Request {
			iss, key, err := tc.enrollKey(t, wire.ProfileStudent, testSID, tc.token(t, testSID))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := tc.renew(t, iss.Certificate, key); err != nil {
				t.Fatal(err)
			}
			return renewal(makeCSR(t, newKey(t), testSID), testSID, iss.Certificate, key)
		}, wire.CodeBadRenewal, "already renewed", true},
		// The checks run in PROTOCOL.md's order: the first failure decides,
		// and nothing about the CSR is looked at before the authorization.
		{"order: profile first", func(*testing.T) Request { return Request{Profile: 9, SID: "x", CSR: []byte("junk")} }, wire.CodeBadProfile, "", false},
		{"order: authorization kind before SID", func(*testing.T) Request { return student(p256, "bad sid", "") }, wire.CodeTokenRequired, "", false},
		{"order: SID before roster", func(*testing.T) Request { return student(p256, "bad sid", bogus) }, wire.CodeBadSID, "", false},
		{"order: roster before root", func(t *testing.T) Request {
			return wrongRoot(student(makeCSR(t, newKey(t), "1155000009"), "1155000009", ""))
		}, wire.CodeTokenRequired, "", false},
		{"order: roster before root (renewal)", func(t *testing.T) Request {
			r := student([]byte("junk"), "1155000009", "")
			r.Root[0] ^= 1
			r.Auth, r.Certificate, r.Signature = wire.AuthRenewal, []byte("junk"), []byte("sig")
			return r
		}, wire.CodeNotOnRoster, "", false},
		{"order: root before token", func(*testing.T) Request {
			r := student([]byte("junk"), testSID, "")
			r.Root[0] ^= 1
			signToken(t, &r, bogus)
			return r
		}, wire.CodeWrongRoot, "", false},
		{"order: token before CSR", func(*testing.T) Request { return student([]byte("junk"), testSID, bogus) }, wire.CodeTokenInvalid, "", false},
		{"order: token signature before CSR", func(t *testing.T) Request {
			r := student(fixtureCSR(t, "rsa8192.csr"), testSID, tc.token(t, testSID))
			r.Signature[0] ^= 1
			return r
		}, wire.CodeTokenInvalid, "signature", false},
		{"order: renewal before CSR", func(t *testing.T) Request {
			cert, _ := fresh(t)
			return renewal([]byte("junk"), "1155000002", cert, newKey(t))
		}, wire.CodeBadRenewal, "", false},
		{"order: CSR signature before key", func(t *testing.T) Request {
			return student(brokenSignature(t, fixtureCSR(t, "rsa1024.csr")), testSID, tc.token(t, testSID))
		}, wire.CodeBadCSRSignature, "", true},
		{"order: key before CN", func(*testing.T) Request {
			return student(fixtureCSR(t, "p521.csr"), "1155000002", tc.token(t, "1155000002"))
		}, wire.CodeWeakKey, "", true},
		{"order: CN before spending", func(t *testing.T) Request {
			tok := tc.token(t, testSID)
			if _, err := tc.Enroll(ctx, student(makeCSR(t, newKey(t), testSID), testSID, tok)); err != nil {
				t.Fatal(err)
			}
			return student(fixtureCSR(t, "cn-someoneelse.csr"), testSID, tok)
		}, wire.CodeCNMismatch, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req(t)
			before, err := tc.Refusals(0)
			if err != nil {
				t.Fatal(err)
			}
			anon := tc.AnonymousRefusals()[tt.code]
			_, err = tc.Enroll(ctx, req)
			r := wantRefusal(t, err, tt.code)
			t.Logf("%s: %s", r.Code, r.Text)
			if !strings.Contains(r.Text, tt.wantText) {
				t.Errorf("text %q does not contain %q", r.Text, tt.wantText)
			}
			if len(r.Text) > 1024 {
				t.Errorf("text of %d bytes is longer than an Error message allows", len(r.Text))
			}
			ds, err := tc.Refusals(0)
			if err != nil {
				t.Fatal(err)
			}
			if tt.proven {
				if len(ds) != len(before)+1 || ds[0].Accepted || ds[0].Code != tt.code || ds[0].Reason != r.Text || ds[0].Peer != req.Peer {
					t.Errorf("last stored refusal: got %+v, want a refusal %s", ds[:min(1, len(ds))], tt.code)
				}
			} else {
				if len(ds) != len(before) {
					t.Errorf("a refusal of a peer that proved nothing was stored: %+v", ds[0])
				}
				if got := tc.AnonymousRefusals()[tt.code]; got != anon+1 {
					t.Errorf("anonymous refusals of %s: got %d, want %d", tt.code, got, anon+1)
				}
			}
			// A good request still succeeds.
			if _, err := tc.enroll(t, "1155000003", tc.token(t, "1155000003")); err != nil {
				t.Fatalf("good enrollment after the refusal: %v", err)
			}
		})
	}
}

// cancelToken marks a token cancelled in the store, as a future
// `pkiboard token --cancel` would.
func cancelToken(t *testing.T, tc *testCA, token string) {
	t.Helper()
	key, err := TokenKey(token)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	err = tc.db.Update(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE tokens SET cancelled = ? WHERE public_key = ?`, sqlTime(tc.now()), []byte(pub))
		return err
	})
	if err != nil {
		t.Fatal(err)
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
			iss, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileStudent, testSID, fixtureCSR(t, tt.fixture), ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := keys.Describe(iss.Certificate.PublicKey); got != tt.key {
				t.Errorf("key: got %s want %s", got, tt.key)
			}
		})
	}
	// A board still needs a token, or a certificate to renew.
	_, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, fixtureCSR(t, "board.csr"), ""))
	wantRefusal(t, err, wire.CodeBoardNotAuthorized)
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
				token = tc.boardToken(t)
			}
			iss, err := tc.Enroll(t.Context(), tc.req(t, tt.profile, tt.sid, csrDER, token))
			if err != nil {
				t.Fatal(err)
			}
			cert := iss.Certificate
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
	// Only the public key is stored.
	key, err := TokenKey(tok)
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()
	data, err := os.ReadFile(filepath.Join(tc.opts.Dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := base64.RawURLEncoding.DecodeString(tok[5:])
	for what, b := range map[string][]byte{"token": []byte(tok), "its base64": []byte(tok[5:]), "its secret": secret, "its key's seed": key.Seed()} {
		if bytes.Contains(data, b) {
			t.Errorf("the store holds %s", what)
		}
	}
	if !bytes.Contains(data, key.Public().(ed25519.PublicKey)) {
		t.Error("the store does not hold the token's public key")
	}
}

// TestLogsHoldNoSecrets enrolls with tokens, succeeding and failing, and
// searches every log entry for them.
func TestLogsHoldNoSecrets(t *testing.T) {
	pass := []byte("the root passphrase")
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken; o.Passphrase = pass })
	first, err := os.ReadFile(tc.BoardTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	tok := tc.token(t, testSID)
	secrets = append(secrets, tok, strings.TrimSpace(string(first)), string(pass))
	tc.mustEnroll(t, testSID, tok)
	tc.enroll(t, testSID, tok)
	btok := tc.boardToken(t)
	secrets = append(secrets, btok)
	for _, token := range []string{strings.TrimSpace(string(first)), btok, btok} {
		tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, makeCSR(t, newKey(t), testBoard), token))
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
		if strings.Contains(text, "pkbt_") {
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
