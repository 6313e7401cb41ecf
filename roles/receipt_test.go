package roles

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// evidencePKI is a root and a board certificate it issued, with their keys.
type evidencePKI struct {
	root, board       *x509.Certificate
	rootKey, boardKey crypto.Signer
}

func newEvidencePKI(t *testing.T, rootName string) *evidencePKI {
	t.Helper()
	e := &evidencePKI{rootKey: testcert.Key(t), boardKey: testcert.Key(t)}
	e.root = testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: rootName}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, e.rootKey.Public(), e.rootKey)
	e.board = testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "blackboard"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-30 * 24 * time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)}, e.root, e.boardKey.Public(), e.rootKey)
	return e
}

// receiptFolder writes, as a student's data directory holds them, the root
// (in the SID's directory) and a receipt the board signed at received; it
// returns the receipt file's path.
func (e *evidencePKI) receiptFolder(t *testing.T, dir string, received time.Time) string {
	t.Helper()
	r := &wire.Receipt{ID: "000042", SID: "1155000001", Serial: []byte{1, 2}, Name: "message.txt", Size: 3,
		SHA256: sha256.Sum256([]byte("abc")), Received: uint64(received.UnixMilli()), BoardCertSHA256: sha256.Sum256(e.board.Raw)}
	msg, err := session.ReceiptSignedBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signature, err = keys.Sign(e.boardKey, rand.Reader, msg); err != nil {
		t.Fatal(err)
	}
	sidDir := filepath.Join(dir, "1155000001")
	path, err := saveReceipt(sidDir, r, e.board)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sidDir, "root.pem"), keys.EncodeCertificatePEM(e.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// crlFile writes a CRL of e's root that revokes the board at revoked for
// reason (none if revoked is zero), and returns its path.
func (e *evidencePKI) crlFile(t *testing.T, revoked time.Time, reason int) string {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(3), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	if !revoked.IsZero() {
		tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: e.board.SerialNumber, RevocationTime: revoked, ReasonCode: reason}}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, e.root, e.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crl.pem")
	if err := os.WriteFile(path, keys.EncodeCRLPEM(der), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVerifyReceiptTrustAnchor checks where verify-receipt takes its root
// from (PROTOCOL.md §5.5): only what the verifier names. The forged evidence
// folder of finding 5 — a self-made root, a self-made "blackboard"
// certificate and a receipt dated three days back, the root beside it — is
// refused whatever the verifier names, unless the verifier names the forger's
// root itself.
func TestVerifyReceiptTrustAnchor(t *testing.T) {
	course := newEvidencePKI(t, "CUHK Course Root CA")
	forger := newEvidencePKI(t, "CUHK Course Root CA")
	genuine := course.receiptFolder(t, t.TempDir(), time.Now().Add(-time.Hour))
	forged := forger.receiptFolder(t, t.TempDir(), time.Now().Add(-72*time.Hour))
	courseRoot := filepath.Join(t.TempDir(), "course-root.pem")
	if err := os.WriteFile(courseRoot, keys.EncodeCertificatePEM(course.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := func(c *x509.Certificate) []byte { f := keys.Fingerprint(c); return f[:] }
	for _, tt := range []struct {
		name string
		o    VerifyReceiptOptions
		want string // "" to verify; else a part of the error
	}{
		{"genuine, no anchor", VerifyReceiptOptions{File: genuine}, "give the root certificate with --root FILE"},
		{"genuine, --root", VerifyReceiptOptions{File: genuine, Root: courseRoot}, ""},
		{"genuine, --root-fingerprint, root beside", VerifyReceiptOptions{File: genuine, RootFingerprint: fp(course.root)}, ""},
		{"genuine, configured fingerprint", VerifyReceiptOptions{File: genuine, ConfigFingerprint: fp(course.root)}, ""},
		{"genuine, --root and a wrong fingerprint", VerifyReceiptOptions{File: genuine, Root: courseRoot, RootFingerprint: fp(forger.root)}, "has fingerprint"},
		{"forged, no anchor", VerifyReceiptOptions{File: forged}, "no trust anchor"},
		{"forged, --root", VerifyReceiptOptions{File: forged, Root: courseRoot}, "does NOT verify"},
		{"forged, --root-fingerprint", VerifyReceiptOptions{File: forged, RootFingerprint: fp(course.root)}, "not from the course's root"},
		{"forged, configured fingerprint", VerifyReceiptOptions{File: forged, ConfigFingerprint: fp(course.root)}, "not from the course's root"},
	} {
		var out bytes.Buffer
		err := VerifyReceipt(tt.o, &out)
		switch {
		case tt.want == "" && (err != nil || !strings.Contains(out.String(), "verifies")):
			t.Errorf("%s: got %v (%q), want it to verify", tt.name, err, out.String())
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// TestVerifyReceiptCRL checks verify-receipt --crl: the receipt-validity
// policy of PROTOCOL.md §5.5, exiting non-zero for invalid and suspect, and
// a CRL of another root refused.
func TestVerifyReceiptCRL(t *testing.T) {
	course := newEvidencePKI(t, "CUHK Course Root CA")
	received := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	file := course.receiptFolder(t, t.TempDir(), received)
	root := filepath.Join(filepath.Dir(file), "..", "root.pem")
	for _, tt := range []struct {
		name    string
		crl     string
		verdict string
		ok      bool
	}{
		{"not revoked", course.crlFile(t, time.Time{}, 0), "is valid", true},
		{"superseded after the receipt", course.crlFile(t, received.Add(time.Hour), 4), "is valid", true},
		{"keyCompromise after the receipt", course.crlFile(t, received.Add(time.Hour), 1), "is suspect", false},
		{"keyCompromise before the receipt", course.crlFile(t, received.Add(-time.Hour), 1), "is invalid", false},
		{"cessationOfOperation before the receipt", course.crlFile(t, received.Add(-time.Hour), 5), "is invalid", false},
		{"a CRL of another root", newEvidencePKI(t, "Other").crlFile(t, time.Time{}, 0), "not signed by the root", false},
	} {
		var out bytes.Buffer
		err := VerifyReceipt(VerifyReceiptOptions{File: file, Root: root, CRL: tt.crl}, &out)
		got := out.String()
		if err != nil {
			got += err.Error()
		}
		if (err == nil) != tt.ok || !strings.Contains(got, tt.verdict) {
			t.Errorf("%s: got %q (%v), want %q and ok=%v", tt.name, got, err, tt.verdict, tt.ok)
		}
	}
}

// TestVerifySubmissionTrustAnchor checks submissions --verify: the root only
// from what the operator names (the root the board saved, perhaps on first
// use, is not enough alone), and what the board's CRL says of the student's
// certificate: revoked after the submission is said, before it fails.
func TestVerifySubmissionTrustAnchor(t *testing.T) {
	p := newStepPKI(t)
	dir := t.TempDir()
	r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{boardDir: dir})
	if r.err != nil {
		t.Fatal(r.err)
	}
	id := r.sub.receipt.ID
	// The root the board saved at its first start.
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), keys.EncodeCertificatePEM(p.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, keys.EncodeCertificatePEM(p.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	other := newEvidencePKI(t, "Step Test Root")
	fp := func(c *x509.Certificate) []byte { f := keys.Fingerprint(c); return f[:] }
	cfg := config.Default()
	cfg.Board.DataDir = dir
	verify := func(o VerifySubmissionOptions, configured []byte) (string, error) {
		o.ID = id
		c := *cfg
		c.Board.RootFingerprint = configured
		var out bytes.Buffer
		err := VerifySubmission(t.Context(), &c, o, &out)
		return out.String(), err
	}
	for _, tt := range []struct {
		name       string
		o          VerifySubmissionOptions
		configured []byte
		want       string // "" to verify
	}{
		{"no anchor: the saved root alone", VerifySubmissionOptions{}, nil, "the root the board saved on first use is not enough"},
		{"--root", VerifySubmissionOptions{Root: rootFile}, nil, ""},
		{"--root-fingerprint", VerifySubmissionOptions{RootFingerprint: fp(p.root)}, nil, ""},
		{"board.root_fingerprint", VerifySubmissionOptions{}, fp(p.root), ""},
		{"another root's fingerprint", VerifySubmissionOptions{RootFingerprint: fp(other.root)}, nil, "no root certificate with fingerprint"},
	} {
		out, err := verify(tt.o, tt.configured)
		switch {
		case tt.want == "" && (err != nil || !strings.Contains(out, "verifies") || !strings.Contains(out, "revocation unknown")):
			t.Errorf("%s: got %v (%q), want it to verify, revocation unknown", tt.name, err, out)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want an error saying %q", tt.name, err, tt.want)
		}
	}

	// The board's CRL, revoking the student's certificate after, then
	// before, the submission.
	crl := func(at time.Time) {
		t.Helper()
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(2), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: p.student.cert.SerialNumber, RevocationTime: at, ReasonCode: 1}}}, p.root, p.rootKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "crl.pem"), keys.EncodeCRLPEM(der), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	crl(time.Now().Add(time.Hour))
	if out, err := verify(VerifySubmissionOptions{Root: rootFile}, nil); err != nil || !strings.Contains(out, "is revoked (keyCompromise) since") || !strings.Contains(out, "after the submission") {
		t.Errorf("revoked after: got %v, %q", err, out)
	}
	crl(time.Now().Add(-time.Hour))
	if _, err := verify(VerifySubmissionOptions{Root: rootFile}, nil); err == nil || !strings.Contains(err.Error(), "before the board received the submission") {
		t.Errorf("revoked before: got %v, want the evidence refused", err)
	}
}

// TestVerifyReceiptLateness checks that verify-receipt states what a late
// receipt of version 3 says — its assignment, late by how much against
// which due time, its version — and refuses the file edited to say "on
// time" (late 0; the due time moved to received; the due time removed) and
// the file edited to another assignment: the signature covers them all.
func TestVerifyReceiptLateness(t *testing.T) {
	e := newEvidencePKI(t, "CUHK Course Root CA")
	received := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	due := received.Add(-90 * time.Minute)
	r := &wire.Receipt{ID: "000042", SID: "1155000001", Serial: []byte{1, 2}, Assignment: "hw1", Original: "My Report.pdf",
		Name: "My_Report.pdf", Size: 3, SHA256: sha256.Sum256([]byte("abc")), Received: uint64(received.UnixMilli()),
		Due: uint64(due.UnixMilli()), Late: 90 * 60 * 1000, Version: 2, BoardCertSHA256: sha256.Sum256(e.board.Raw)}
	msg, err := session.ReceiptSignedBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Signature, err = keys.Sign(e.boardKey, rand.Reader, msg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := saveReceipt(dir, r, e.board)
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, keys.EncodeCertificatePEM(e.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := VerifyReceipt(VerifyReceiptOptions{File: path, Root: rootFile}, &out); err != nil {
		t.Fatalf("the genuine receipt: %v", err)
	}
	for _, want := range []string{`assignment "hw1"`, "90 minutes late", "version 2", "due " + due.Format("2006-01-02T15:04:05.000Z")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("verify-receipt says %q, which lacks %q", out.String(), want)
		}
	}
	dueText := `"due": "` + due.Format("2006-01-02T15:04:05.000Z") + `"`
	for _, tt := range []struct{ name, from, to string }{
		{"late zeroed", `"late": 5400000`, `"late": 0`},
		{"due moved to received", dueText + ",\n  \"late\": 5400000", `"due": "` + received.Format("2006-01-02T15:04:05.000Z") + `",` + "\n  \"late\": 0"},
		{"due removed", dueText + ",\n  \"late\": 5400000", `"due": null,` + "\n  \"late\": 0"},
		{"another assignment", `"assignment": "hw1"`, `"assignment": "hw2"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(original, []byte(tt.from)) {
				t.Fatalf("the receipt file has no %q:\n%s", tt.from, original)
			}
			edited := filepath.Join(t.TempDir(), "edited.json")
			if err := os.WriteFile(edited, bytes.Replace(original, []byte(tt.from), []byte(tt.to), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := VerifyReceipt(VerifyReceiptOptions{File: edited, Root: rootFile}, &out); err == nil {
				t.Errorf("the edited receipt verifies: %s", out.String())
			}
		})
	}
}
