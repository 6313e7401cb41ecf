package board

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"os"
	"strings"
	"testing"

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
		Subject: pkix.Name{CommonName: "Evidence Root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, rootKey.Public(), rootKey)
	otherKey := testcert.Key(t)
	other := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Other Root"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, otherKey.Public(), otherKey)
	studentKey := testcert.Key(t)
	const sid = "1155000001"
	student := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: sid}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, studentKey.Public(), rootKey)

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
		sub.Chain = []*x509.Certificate{student}
		stmt, err := session.Statement(sub.TranscriptHash, sid, in.Name, uint64(in.Size), in.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if sub.Signature, err = keys.Sign(studentKey, rand.Reader, stmt); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Commit(sub, "127.0.0.1:40000")
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}

	content := []byte("a report\n")
	rec := commit(content)
	ev := s.Verify(rec, root)
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

	if ev := s.Verify(rec, other); ev.Problem == "" || !ev.ContentOK {
		t.Errorf("the evidence held against another root: %+v", ev)
	}

	forged := *rec
	forged.Signature = append([]byte(nil), rec.Signature...)
	forged.Signature[len(forged.Signature)/2] ^= 1
	if ev := s.Verify(&forged, root); !strings.Contains(ev.Problem, "signature") {
		t.Errorf("a changed signature: got problem %q", ev.Problem)
	}

	noChain := *rec
	noChain.StudentChain = nil
	if ev := s.Verify(&noChain, root); ev.Problem != "no student certificate stored" {
		t.Errorf("no chain: got problem %q", ev.Problem)
	}

	if err := os.WriteFile(s.ContentPath(rec), []byte("a better report\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ev := s.Verify(rec, root); ev.ContentOK || !strings.Contains(ev.Problem, "altered after it was stored") {
		t.Errorf("altered content: got %+v", ev)
	}
	if err := os.Remove(s.ContentPath(rec)); err != nil {
		t.Fatal(err)
	}
	if ev := s.Verify(rec, root); ev.ContentOK || !strings.Contains(ev.Problem, "cannot read the stored content") {
		t.Errorf("content gone: got %+v", ev)
	}
}
