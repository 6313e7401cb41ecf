package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// The client's fixtures: a root, a student certificate it issued for
// testSID, and CRLs it signed. -update makes new ones.
var (
	fixtureRootFile = filepath.Join("testdata", "client-root.pem")
	fixtureCertFile = filepath.Join("testdata", "client-cert.pem")
)

// makeFixtures makes the root, the student certificate and the seeds of both
// fuzz targets.
func makeFixtures(tb testing.TB) (root, cert *x509.Certificate, enrollSeeds, crlSeeds map[string][]byte) {
	tb.Helper()
	rootKey := testcert.Key(tb)
	root = testcert.Issue(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: "CA Client Fixture Root"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: []byte{1, 2, 3, 4},
	}, nil, rootKey.Public(), rootKey)
	leaf := func(cn string, eku x509.ExtKeyUsage, pub crypto.PublicKey, signer crypto.Signer, parent *x509.Certificate) *x509.Certificate {
		return testcert.Issue(tb, &x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku},
		}, parent, pub, signer)
	}
	studentKey := testcert.Key(tb)
	cert = leaf(testSID, x509.ExtKeyUsageClientAuth, studentKey.Public(), rootKey, root)
	otherRootKey := testcert.Key(tb)
	otherRoot := testcert.Issue(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: "CA Client Fixture Root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, otherRootKey.Public(), otherRootKey)

	pemOf := func(certs ...*x509.Certificate) []byte {
		var b bytes.Buffer
		for _, c := range certs {
			b.Write(keys.EncodeCertificatePEM(c.Raw))
		}
		return b.Bytes()
	}
	rootPEM := pemOf(root)
	// An EnrollAccepted for c, as the CA sends it; change may alter it.
	accepted := func(c *x509.Certificate, change func(*wire.EnrollAccepted)) []byte {
		m := &wire.EnrollAccepted{Serial: c.SerialNumber.Bytes(), NotAfter: uint64(c.NotAfter.Unix()), Certificate: c.Raw, Root: root.Raw}
		if change != nil {
			change(m)
		}
		data, err := wire.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		return data
	}
	noEKU := testcert.Issue(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: testSID}, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}, root, studentKey.Public(), rootKey)
	anyEKU := leaf(testSID, x509.ExtKeyUsageAny, studentKey.Public(), rootKey, root)
	caCert := testcert.Issue(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: testSID}, BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, studentKey.Public(), rootKey)
	errorPayload, err := wire.Marshal(&wire.Error{Code: wire.CodeTokenUsed, Text: "no"})
	if err != nil {
		tb.Fatal(err)
	}
	enrollSeeds = map[string][]byte{
		"valid":              accepted(cert, nil),
		"other-key":          accepted(leaf(testSID, x509.ExtKeyUsageClientAuth, testcert.Key(tb).Public(), rootKey, root), nil),
		"other-cn":           accepted(leaf("1155000002", x509.ExtKeyUsageClientAuth, studentKey.Public(), rootKey, root), nil),
		"server-eku":         accepted(leaf(testSID, x509.ExtKeyUsageServerAuth, studentKey.Public(), rootKey, root), nil),
		"no-eku":             accepted(noEKU, nil),
		"any-eku":            accepted(anyEKU, nil),
		"a-ca":               accepted(caCert, nil),
		"other-root":         accepted(leaf(testSID, x509.ExtKeyUsageClientAuth, studentKey.Public(), otherRootKey, otherRoot), nil),
		"the-root-itself":    accepted(root, nil),
		"other-serial":       accepted(cert, func(m *wire.EnrollAccepted) { m.Serial = []byte{0x7f} }),
		"serial-with-zero":   accepted(cert, func(m *wire.EnrollAccepted) { m.Serial = append([]byte{0}, m.Serial...) }),
		"other-not-after":    accepted(cert, func(m *wire.EnrollAccepted) { m.NotAfter++ }),
		"pem-not-der":        accepted(cert, func(m *wire.EnrollAccepted) { m.Certificate = pemOf(cert) }),
		"trailing-garbage":   accepted(cert, func(m *wire.EnrollAccepted) { m.Certificate = append(bytes.Clone(cert.Raw), 0) }),
		"truncated-cert-der": accepted(cert, func(m *wire.EnrollAccepted) { m.Certificate = cert.Raw[:len(cert.Raw)/2] }),
		"root-substituted":   accepted(cert, func(m *wire.EnrollAccepted) { m.Root = otherRoot.Raw }),
		"root-truncated":     accepted(cert, func(m *wire.EnrollAccepted) { m.Root = root.Raw[:len(root.Raw)-1] }),
		"root-is-the-leaf":   accepted(cert, func(m *wire.EnrollAccepted) { m.Root = cert.Raw }),
		"an-error":           errorPayload,
		"empty":              {},
	}
	_ = rootPEM

	crl := func(number int64, next time.Time, signer crypto.Signer, issuer *x509.Certificate) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next,
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: cert.SerialNumber, RevocationTime: time.Now(), ReasonCode: 1}},
		}, issuer, signer)
		if err != nil {
			tb.Fatal(err)
		}
		return der
	}
	valid := crl(7, time.Now().Add(365*24*time.Hour), rootKey, root)
	//lint:ignore SA1019 CreateCRL makes the v1 CRL without a CRL number that CreateRevocationList cannot
	noNumber, err := root.CreateCRL(rand.Reader, rootKey, nil, time.Now().Add(-time.Minute), time.Now().Add(time.Hour)) //nolint:staticcheck // see above
	if err != nil {
		tb.Fatal(err)
	}
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-3] ^= 1
	crlSeeds = map[string][]byte{
		"valid":           keys.EncodeCRLPEM(valid),
		"no-crl-number":   keys.EncodeCRLPEM(noNumber),
		"other-root":      keys.EncodeCRLPEM(crl(7, time.Now().Add(time.Hour), otherRootKey, otherRoot)),
		"signature-flip":  keys.EncodeCRLPEM(flipped),
		"der-not-pem":     valid,
		"certificate-pem": rootPEM,
		"empty":           {},
		"truncated":       keys.EncodeCRLPEM(valid[:len(valid)-10]),
	}
	return root, cert, enrollSeeds, crlSeeds
}

// TestClientFuzzCorpus checks (or, with -update, remakes) the client's
// fixtures and seed corpora: the valid seeds pass, every other one fails.
func TestClientFuzzCorpus(t *testing.T) {
	if *update {
		root, cert, enroll, crls := makeFixtures(t)
		for path, data := range map[string][]byte{fixtureRootFile: keys.EncodeCertificatePEM(root.Raw), fixtureCertFile: keys.EncodeCertificatePEM(cert.Raw)} {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := fuzzseed.Write("FuzzEnrollResponse", fuzzseed.Bytes(enroll)); err != nil {
			t.Fatal(err)
		}
		if err := fuzzseed.Write("FuzzParseCRL", fuzzseed.Bytes(crls)); err != nil {
			t.Fatal(err)
		}
	}
	root, cert := loadFixtures(t)
	for _, target := range []string{"FuzzEnrollResponse", "FuzzParseCRL"} {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		valid, broken := 0, 0
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "valid") {
				valid++
			} else {
				broken++
			}
			args := readSeed(t, filepath.Join(dir, e.Name()))
			var err error
			if target == "FuzzEnrollResponse" {
				_, err = checkEnrollResponse(root, cert, args[0])
			} else {
				_, err = ParseCRLPEM(args[0], root)
			}
			if (err == nil) != strings.HasPrefix(e.Name(), "valid") {
				t.Errorf("%s seed %s: got %v", target, e.Name(), err)
			}
		}
		if valid == 0 || broken == 0 {
			t.Errorf("%s: %d valid and %d broken seeds committed, want some of each (run go test ./ca -run TestClientFuzzCorpus -update)", target, valid, broken)
		}
	}
}

// readSeed decodes a seed file of []byte arguments.
func readSeed(tb testing.TB, path string) [][]byte {
	tb.Helper()
	values, err := fuzzseed.Read(path)
	if err != nil {
		tb.Fatal(err)
	}
	args := make([][]byte, len(values))
	for i, v := range values {
		b, ok := v.([]byte)
		if !ok {
			tb.Fatalf("%s: argument %d is a %T, not []byte", path, i+1, v)
		}
		args[i] = b
	}
	return args
}

func loadFixtures(tb testing.TB) (root, cert *x509.Certificate) {
	tb.Helper()
	root, err := keys.ReadCertificate(fixtureRootFile)
	if err != nil {
		tb.Fatalf("%v (run go test ./ca -run TestClientFuzzCorpus -update)", err)
	}
	if cert, err = keys.ReadCertificate(fixtureCertFile); err != nil {
		tb.Fatal(err)
	}
	return root, cert
}

// checkEnrollResponse decodes the CA's answer as the client does and runs
// the client's check of it (CheckAccepted), for the fixture student's key
// and SID under the fixture root: once as a client that holds the root, once
// as one that holds only its pinned fingerprint. The two must agree.
func checkEnrollResponse(root, cert *x509.Certificate, payload []byte) (*x509.Certificate, error) {
	m, err := wire.Expect[*wire.EnrollAccepted](wire.Unmarshal(payload))
	if err != nil {
		return nil, err
	}
	e := Enroll{SID: testSID, Profile: wire.ProfileStudent, Public: cert.PublicKey, Root: root}
	held, err := CheckAccepted(m, e)
	fp := keys.Fingerprint(root)
	e.Root, e.Pin = nil, fp[:]
	pinned, pinErr := CheckAccepted(m, e)
	if (err == nil) != (pinErr == nil) {
		return nil, fmt.Errorf("a client holding the root got %v, a client with the pin %v", err, pinErr)
	}
	if err != nil {
		return nil, err
	}
	if !pinned.Root.Equal(root) || !pinned.Certificate.Equal(held.Certificate) {
		return nil, errors.New("the pinned client accepted another root or certificate")
	}
	return held.Certificate, nil
}

// TestParseCRLPEMRequiresNumber is the regression test of a finding: a CRL
// without a CRL number (a v1 CRL, which RFC 5280 §5.2.3 forbids a CA to
// issue) was accepted, and the board's CRL keeper, comparing CRL numbers on
// the next refresh, dereferenced the missing number and crashed.
func TestParseCRLPEMRequiresNumber(t *testing.T) {
	root, _ := loadFixtures(t)
	seed := readSeed(t, filepath.Join("testdata", "fuzz", "FuzzParseCRL", "no-crl-number"))
	_, err := ParseCRLPEM(seed[0], root)
	if err == nil || !strings.Contains(err.Error(), "CRL number") {
		t.Fatalf("got %v, want a refusal naming the missing CRL number", err)
	}
}

// FuzzEnrollResponse feeds arbitrary answers to the client's decoding and
// check of an EnrollAccepted (CheckAccepted). Whatever it accepts is a
// certificate with the serial and notAfter announced, for the student's own
// key and SID, listing clientAuth, no CA, signed by the root the request
// named.
func FuzzEnrollResponse(f *testing.F) {
	root, cert := loadFixtures(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := checkEnrollResponse(root, cert, payload)
		if err != nil {
			return
		}
		m, _ := wire.Unmarshal(payload)
		acc := m.(*wire.EnrollAccepted)
		if !bytes.Equal(got.Raw, acc.Certificate) || !bytes.Equal(got.SerialNumber.Bytes(), acc.Serial) || got.NotAfter.Unix() != int64(acc.NotAfter) {
			t.Fatal("accepted a certificate other than the one announced")
		}
		if !keys.SamePublicKey(got.PublicKey, cert.PublicKey) || got.Subject.CommonName != testSID {
			t.Fatal("accepted a certificate for another key or SID")
		}
		if err := got.CheckSignatureFrom(root); err != nil {
			t.Fatalf("accepted a certificate the root did not sign: %v", err)
		}
		if got.IsCA || !slices.Contains(got.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			t.Fatalf("accepted a CA, or a certificate whose extended key usage %v does not list clientAuth", got.ExtKeyUsage)
		}
	})
}

// FuzzParseCRL feeds arbitrary bytes to ParseCRLPEM, which the board runs on
// every crl.pem it fetches from the CA (and on the one saved in its data
// directory). What it accepts is signed by the root and has a CRL number.
func FuzzParseCRL(f *testing.F) {
	root, _ := loadFixtures(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		crl, err := ParseCRLPEM(data, root)
		if err != nil {
			return
		}
		if crl.Number == nil {
			t.Fatal("accepted a CRL without a CRL number")
		}
		if err := crl.CheckSignatureFrom(root); err != nil {
			t.Fatalf("accepted a CRL the root did not sign: %v", err)
		}
	})
}
