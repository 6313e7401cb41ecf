package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"

	"go.uber.org/zap"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
)

// loadOrCreateRoot loads root.pem and root-key.pem, or creates both when
// neither exists and the store holds no certificate.
func (a *Authority) loadOrCreateRoot() error {
	certPath, keyPath := a.path(RootCertFile), a.path(RootKeyFile)
	certExists, err := fileExists(certPath)
	if err != nil {
		return err
	}
	keyExists, err := fileExists(keyPath)
	if err != nil {
		return err
	}
	switch {
	case !certExists && !keyExists:
		n, err := a.countCertificates()
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("ca: %s holds %d certificates but %s and %s are gone from %s; "+
				"restore them from a backup, or move %s away to start a new CA (pkiboard will not make a new root for an existing store)",
				DBFile, n, RootCertFile, RootKeyFile, a.o.Dir, DBFile)
		}
		if err := a.createRoot(certPath, keyPath); err != nil {
			return err
		}
		a.created = true
	case certExists && !keyExists:
		return fmt.Errorf("ca: %s exists but the root key %s is missing; restore %s from a backup "+
			"(pkiboard will not regenerate the root: every certificate it issued would stop verifying)",
			certPath, keyPath, RootKeyFile)
	case !certExists && keyExists:
		return fmt.Errorf("ca: the root key %s exists but the root certificate %s is missing; restore %s from a backup "+
			"(pkiboard will not regenerate the root; if this CA never issued a certificate, a first start stopped half-way: delete %s and start again)",
			keyPath, certPath, RootCertFile, RootKeyFile)
	default:
		return a.loadRoot(certPath, keyPath)
	}
	return nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("ca: %w", err)
}

// createRoot makes the root key and self-signed certificate and writes them:
// the key first and the certificate last, so that an existing root.pem
// means both are complete.
func (a *Authority) createRoot(certPath, keyPath string) error {
	key, err := keys.Generate(a.o.KeyAlgorithm)
	if err != nil {
		return fmt.Errorf("ca: generate root key: %w", err)
	}
	sigAlg, err := signatureAlgorithm(key.Public())
	if err != nil {
		return err
	}
	serial, err := newSerial(a.o.Rand)
	if err != nil {
		return err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return err
	}
	now := a.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               a.o.Subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(a.o.RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign, // Go marks keyUsage critical
		BasicConstraintsValid: true,                                         // Go marks basicConstraints critical
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // pathLenConstraint 0: the root signs leaves only
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski, // optional in a self-signed certificate (RFC 5280 §4.2.1.1); openssl adds it too
		SignatureAlgorithm:    sigAlg,
	}
	der, err := x509.CreateCertificate(a.o.Rand, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("ca: sign root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("ca: parse new root certificate: %w", err)
	}
	if err := keys.WritePrivateKey(keyPath, key, a.o.Passphrase); err != nil {
		return fmt.Errorf("ca: write root key: %w", err)
	}
	rootPEM := keys.EncodeCertificatePEM(der)
	if err := durable.WriteFile(certPath, rootPEM, 0o644); err != nil {
		return fmt.Errorf("ca: write root certificate: %w", err)
	}
	a.root, a.rootPEM, a.key, a.sigAlg = root, rootPEM, key, sigAlg
	a.keyEncrypted = len(a.o.Passphrase) > 0
	return nil
}

// loadRoot reads an existing root and checks everything that would make it
// unusable.
func (a *Authority) loadRoot(certPath, keyPath string) error {
	root, err := keys.ReadCertificate(certPath)
	if err != nil {
		return fmt.Errorf("ca: read the root certificate: %w; restore %s from a backup", err, RootCertFile)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("ca: read the root key: %w", err)
	}
	defer clear(keyPEM)
	key, err := keys.ParsePrivatePEM(keyPEM, a.o.Passphrase)
	switch {
	case errors.Is(err, keys.ErrPassphrase) && len(a.o.Passphrase) == 0:
		return fmt.Errorf("ca: the root key %s is encrypted and no passphrase was given; "+
			"set ca.key_passphrase_env or ca.key_passphrase_file to the passphrase it was created with", keyPath)
	case errors.Is(err, keys.ErrPassphrase):
		return fmt.Errorf("ca: the passphrase does not decrypt the root key %s; give the passphrase it was created with", keyPath)
	case err != nil:
		return fmt.Errorf("ca: the root key %s cannot be read: %w; restore it from a backup (pkiboard will not regenerate the root)", keyPath, err)
	}
	a.keyEncrypted = bytes.Contains(keyPEM, []byte("ENCRYPTED PRIVATE KEY"))
	if len(a.o.Passphrase) > 0 && !a.keyEncrypted {
		a.log.Warn("the root key is not encrypted although a passphrase was given; the passphrase is not used",
			zap.String("file", keyPath))
	}
	if !keys.SamePublicKey(key.Public(), root.PublicKey) {
		return fmt.Errorf("ca: the root key %s does not belong to the root certificate %s; restore both from the same backup", keyPath, certPath)
	}
	sigAlg, err := signatureAlgorithm(key.Public())
	if err != nil {
		return fmt.Errorf("%w (in %s)", err, keyPath)
	}
	if !root.BasicConstraintsValid || !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 || root.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return fmt.Errorf("ca: %s is not a CA certificate (it needs basicConstraints CA:TRUE and keyUsage keyCertSign and cRLSign); restore the root made by pkiboard", certPath)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("ca: %s is not a self-signed root: %w", certPath, err)
	}
	now := a.now()
	if now.After(root.NotAfter) {
		return fmt.Errorf("ca: the root certificate %s expired at %s; a CA with an expired root cannot issue: "+
			"move %s away to start a new CA, and have every student and the board enroll again",
			certPath, root.NotAfter.UTC().Format(timeLayout), a.o.Dir)
	}
	if now.Before(root.NotBefore) {
		return fmt.Errorf("ca: the root certificate %s is not valid before %s; check the system clock",
			certPath, root.NotBefore.UTC().Format(timeLayout))
	}
	if alg := keys.AlgorithmName(key.Public()); alg != a.o.KeyAlgorithm {
		a.log.Info("the existing root key is kept; key_algorithm applies only to a new root",
			zap.String("root_key", alg), zap.String("key_algorithm", a.o.KeyAlgorithm))
	}
	a.root, a.rootPEM, a.key, a.sigAlg = root, keys.EncodeCertificatePEM(root.Raw), key, sigAlg
	return nil
}

// timeLayout formats times in error messages and refusals.
const timeLayout = "2006-01-02 15:04:05 UTC"

// signatureAlgorithm returns the algorithm the root signs with: the hash
// that matches the curve for ECDSA (RFC 5480 §4), SHA-256 with PKCS #1 v1.5
// for RSA.
func signatureAlgorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return x509.SHA256WithRSA, nil
		}
	}
	return 0, fmt.Errorf("ca: a %s root key is not supported (use ECDSA P-256 or P-384, or RSA of at least 2048 bits)", keys.Describe(pub))
}

// subjectKeyID computes a key identifier by RFC 7093 §2 method 1: the
// leftmost 160 bits of the SHA-256 hash of the subjectPublicKey BIT STRING
// (RFC 5280 §4.2.1.2 method 1 is the same with SHA-1; either is allowed, the
// identifier only has to be unique for the CA).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ca: encode public key: %w", err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, fmt.Errorf("ca: decode public key: %w", err)
	}
	sum := sha256.Sum256(info.PublicKey.Bytes)
	return sum[:20], nil
}

// serialBytes is the size of a random serial: 128 bits, so that a positive
// serial takes at most 17 bytes in DER, within RFC 5280 §4.1.2.2's 20.
const serialBytes = 16

// newSerial draws a random positive 128-bit serial number.
func newSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, serialBytes)
	for range 4 {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("ca: read random serial: %w", err)
		}
		if s := new(big.Int).SetBytes(b); s.Sign() > 0 {
			return s, nil
		}
	}
	return nil, errors.New("ca: the random source returns only zeros")
}
