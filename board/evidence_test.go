package board

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/session"
)

// TestVerifyEvidence checks the offline check of a stored submission: it
// holds for what the student signed, and names the problem when the content
// was altered or is gone, when the root is another, or when the stored
// signature is not the student's.
func TestVerifyEvidence(t *testing.T) {
	rootKey := testcert.Key(t)
	root := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Evidence Root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	otherKey := testcert.Key(t)
	other := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Other Root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, otherKey.Public(), otherKey)
	studentKey := testcert.Key(t)
	const sid = "1155000001"
	student := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: sid}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, studentKey.Public(), rootKey)

	boardKey := newBoardSigner(t, root, rootKey)

	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// commit stores content as the session would have received it, signed.
	commit := func(content []byte) *Record {
		t.Helper()
		in := receive(t, s, sid, "report.txt", content)
		sub := submission(t, sid, in)
		sub.Chain, sub.Board = []*x509.Certificate{student}, boardKey.cert
		stmt, err := session.Statement(sub.TranscriptHash, sid, sub.TermsBody, sub.Original, in.Name, uint64(in.Size), in.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		sub.Statement = stmt
		if sub.Signature, err = keys.Sign(studentKey, rand.Reader, stmt); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Commit(sub, "127.0.0.1:40000", boardKey.sign)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}

	content := []byte("a report\n")
	rec := commit(content)
	ev := s.Verify(rec, root, nil)
	if ev.Problem != "" || !ev.ContentOK {
		t.Fatalf("the evidence of an untouched submission does not hold: %+v", ev)
	}
	sum := sha256.Sum256(content)
	if v := ev.Submission; v.ID != rec.ID || v.SID != sid || v.SHA256 != hex.EncodeToString(sum[:]) || v.Serial != hex.EncodeToString(student.SerialNumber.Bytes()) {
		t.Errorf("the evidence shows %+v, not the record %+v", v, rec)
	}
	if ev.SignedBy != student.Subject.String() || ev.Issuer != root.Subject.String() {
		t.Errorf("signed by %q, issued by %q; want %q and %q", ev.SignedBy, ev.Issuer, student.Subject, root.Subject)
	}

	if ev := s.Verify(rec, other, nil); ev.Problem == "" || !ev.ContentOK {
		t.Errorf("the evidence held against another root: %+v", ev)
	}
	if ev.Revocation != RevocationUnknown {
		t.Errorf("without a CRL: revocation %q, want %q", ev.Revocation, RevocationUnknown)
	}

	// What the board's CRL says of the student's certificate now.
	crl := func(signer *x509.Certificate, key crypto.Signer, revokedAt time.Time, reason int) *x509.RevocationList {
		t.Helper()
		tmpl := &x509.RevocationList{Number: big.NewInt(9), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
		if !revokedAt.IsZero() {
			tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: student.SerialNumber, RevocationTime: revokedAt, ReasonCode: reason}}
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, signer, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		name       string
		crl        *x509.RevocationList
		revocation string
		holds      bool
	}{
		{"on no CRL", crl(root, rootKey, time.Time{}, 0), RevocationNone, true},
		{"revoked after", crl(root, rootKey, rec.Received.Add(time.Hour), 1), RevocationAfter, true},
		{"revoked before", crl(root, rootKey, rec.Received.Add(-time.Hour), 1), RevocationBefore, false},
		{"a CRL of another root", crl(other, otherKey, rec.Received.Add(-time.Hour), 1), RevocationUnknown, true},
	} {
		ev := s.Verify(rec, root, tt.crl)
		if ev.Revocation != tt.revocation || (ev.Problem == "") != tt.holds {
			t.Errorf("%s: revocation %q, problem %q; want %q, holding %v", tt.name, ev.Revocation, ev.Problem, tt.revocation, tt.holds)
		}
	}

	forged := *rec
	forged.Signature = append([]byte(nil), rec.Signature...)
	forged.Signature[len(forged.Signature)/2] ^= 1
	if ev := s.Verify(&forged, root, nil); !strings.Contains(ev.Problem, "signature") {
		t.Errorf("a changed signature: got problem %q", ev.Problem)
	}

	noChain := *rec
	noChain.StudentCertificate = nil
	if ev := s.Verify(&noChain, root, nil); ev.Problem != "no student certificate stored" {
		t.Errorf("no chain: got problem %q", ev.Problem)
	}

	if err := os.WriteFile(s.ContentPath(rec), []byte("a better report\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ev := s.Verify(rec, root, nil); ev.ContentOK || !strings.Contains(ev.Problem, "altered after it was stored") {
		t.Errorf("altered content: got %+v", ev)
	}
	if err := os.Remove(s.ContentPath(rec)); err != nil {
		t.Fatal(err)
	}
	if ev := s.Verify(rec, root, nil); ev.ContentOK || !strings.Contains(ev.Problem, "cannot read the stored content") {
		t.Errorf("content gone: got %+v", ev)
	}
}
