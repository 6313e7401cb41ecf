package attacklab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// forgedFinding is what the forged evidence row observed.
type forgedFinding struct {
	Received time.Time // the forged receipt's date
	Alone    output    // verify-receipt of the folder, naming no root
	Course   output    // verify-receipt --root with the course's root
}

// The verifier's sentences: no anchor given, and a board certificate the
// root did not sign.
const (
	noAnchor   = "no trust anchor"
	howToRoot  = "--root FILE"
	notOurRoot = "not signed by the root"
)

// playForgedEvidence makes a folder of evidence from nothing — a root of the
// attacker's own named like the course's, a "blackboard" certificate under
// it, a receipt dated three days back signed with that certificate's key,
// and root.pem beside the receipt — and asks `pkiboard verify-receipt` about
// it, first naming no root, then naming the course's.
func playForgedEvidence(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &forgedFinding{Received: time.Now().Add(-72 * time.Hour).Truncate(time.Millisecond)}
	folder := filepath.Join(dir, "evidence")
	if err := os.MkdirAll(folder, 0o700); err != nil {
		return f, err
	}
	root, rootKey, err := selfSignedCA(l.root.Subject)
	if err != nil {
		return f, err
	}
	boardKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "blackboard"},
		NotBefore: now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, root, boardKey.Public(), rootKey)
	if err != nil {
		return f, err
	}
	boardCert, err := x509.ParseCertificate(der)
	if err != nil {
		return f, err
	}
	content := []byte("This is submission from alice-forged, three days early.\n")
	r := &wire.Receipt{ID: "000042", SID: "alice-forged", Serial: []byte{0x42, 0x42}, Name: "message.txt",
		Size: uint64(len(content)), SHA256: sha256.Sum256(content), Received: uint64(f.Received.UnixMilli()),
		BoardCertSHA256: sha256.Sum256(boardCert.Raw)}
	msg, err := session.ReceiptSignedBytes(r)
	if err != nil {
		return f, err
	}
	if r.Signature, err = keys.Sign(boardKey, rand.Reader, msg); err != nil {
		return f, err
	}
	data, err := session.MarshalReceiptFile(r, boardCert)
	if err != nil {
		return f, err
	}
	receipt := filepath.Join(folder, "000042.json")
	if err := os.WriteFile(receipt, data, 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(folder, ca.RootFile), keys.EncodeCertificatePEM(root.Raw), 0o644); err != nil {
		return f, err
	}
	// In the folder, where there is no config.toml: the verifier names
	// nothing, or the course's root.
	if f.Alone, err = runCmdIn(ctx, folder, nil, l.opts.Bin, "verify-receipt", "--board-name", "blackboard", receipt); err != nil {
		return f, err
	}
	f.Course, err = runCmdIn(ctx, folder, nil, l.opts.Bin, "verify-receipt", "--root", l.path(caDataDir, ca.RootCertFile),
		"--board-name", "blackboard", receipt)
	return f, err
}

// selfSignedCA makes a root of the attacker's own with the given subject.
func selfSignedCA(subject pkix.Name) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject,
		NotBefore: now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (f *forgedFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("made a folder: a root of its own named like the course's, a \"blackboard\" certificate under it, a receipt dated %s (three days back) signed with that certificate's key, and root.pem beside the receipt",
		f.Received.UTC().Format(time.DateOnly))
	j.detected = "the verifier: `pkiboard verify-receipt` refuses both ways"
	j.outcome = fmt.Sprintf("naming no root: exit %d, %q; with the course's --root: exit %d, %q",
		f.Alone.code, excerpt(f.Alone.stderr, noAnchor), f.Course.code, excerpt(f.Course.stderr, notOurRoot))
	if f.Alone.code == 0 {
		j.succeeded = append(j.succeeded, "verify-receipt, naming no root, accepted the receipt: "+firstLine(f.Alone.stdout))
	}
	if f.Course.code == 0 {
		j.succeeded = append(j.succeeded, "verify-receipt with the course's root accepted the receipt: "+firstLine(f.Course.stdout))
	}
	if f.Alone.code != 0 && (!strings.Contains(f.Alone.stderr, noAnchor) || !strings.Contains(f.Alone.stderr, howToRoot)) {
		j.problems = append(j.problems, "naming no root, verify-receipt refused without saying how to give one: "+lastLine(f.Alone.stderr))
	}
	if f.Course.code != 0 && !strings.Contains(f.Course.stderr, notOurRoot) {
		j.problems = append(j.problems, "with the course's root, verify-receipt refused for another reason than the chain: "+lastLine(f.Course.stderr))
	}
	return j
}

// excerpt returns the part of s from the first occurrence of from to the end
// of its sentence (or of s), or s's last line if from does not occur.
func excerpt(s, from string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return lastLine(s)
	}
	s = s[i:]
	if j := strings.IndexAny(s, ";\n"); j >= 0 {
		s = s[:j]
	}
	return strings.TrimSpace(s)
}
