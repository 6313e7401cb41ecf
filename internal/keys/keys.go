// Package keys generates, encodes and stores the key pairs and certificates
// pkiboard's roles hold: private keys as PKCS#8 PEM files of mode 0600
// (optionally passphrase-encrypted in a form OpenSSL reads), certificates as
// PEM, every file written through package durable (temporary file, fsync,
// rename, fsync of the directory).
//
// It also names keys for people (Describe, AlgorithmName, SerialHex for
// certificate serials) and holds the one rule the CA and the session must
// share: which keys pkiboard accepts for a certificate (Supported). Everything
// else about policy, such as what a certificate must contain, is decided by its
// callers.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"pkiboard/internal/durable"
)

// Algorithms lists the key algorithm names Generate accepts.
var Algorithms = []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"}

// Generate returns a new private key for the named algorithm (see Algorithms),
// drawn from crypto/rand.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("keys: unknown algorithm %q (use one of %s)", alg, strings.Join(Algorithms, ", "))
}

// AlgorithmName returns the name of pub's algorithm as Algorithms writes it:
// "ecdsa-p256", "ecdsa-p384", or "rsa-N" for an RSA key of N bits (of which
// Algorithms lists 2048, 3072 and 4096). For any other key it returns
// Describe(pub).
func AlgorithmName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa-p256"
		case elliptic.P384():
			return "ecdsa-p384"
		}
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return Describe(pub)
}

// Describe names a public key's type and size for people: "ECDSA P-256",
// "RSA-2048", "Ed25519", "ECDH"; for a value of any other type, its Go type.
func Describe(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdh.PublicKey:
		return "ECDH"
	}
	return fmt.Sprintf("%T", pub)
}

// Supported reports whether pub is a key pkiboard accepts for a certificate:
// RSA of MinRSABits to MaxRSABits bits, or ECDSA on P-256 or P-384 — the keys
// the session can encrypt a session key to and verify a signature of. If not,
// the error is an *UnsupportedKeyError that says why.
func Supported(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return &UnsupportedKeyError{Key: pub, Bits: n}
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return &UnsupportedKeyError{Key: pub, Curve: k.Curve.Params().Name}
	}
	return &UnsupportedKeyError{Key: pub}
}

// UnsupportedKeyError is Supported's error for a key pkiboard does not accept.
// For an RSA key of the wrong size, Bits is its size; for an ECDSA key on
// another curve, Curve names the curve; for a key of any other type, both are
// zero.
type UnsupportedKeyError struct {
	Key   crypto.PublicKey
	Bits  int    // the size of an RSA key outside MinRSABits..MaxRSABits
	Curve string // the curve of an ECDSA key, such as "P-521"
}

// Error says what the key is and which keys are supported.
func (e *UnsupportedKeyError) Error() string {
	var what string
	switch {
	case e.Bits != 0:
		what = fmt.Sprintf("an RSA key of %d bits", e.Bits)
	case e.Curve != "":
		what = "an ECDSA key on " + e.Curve
	default:
		what = "a " + Describe(e.Key) + " key"
	}
	return fmt.Sprintf("keys: %s is not supported (use RSA of %d to %d bits, or ECDSA on P-256 or P-384)", what, MinRSABits, MaxRSABits)
}

// SerialHex formats a certificate serial number as every pkiboard log and
// listing writes it: lowercase hex of its big-endian bytes, with no sign byte
// and no separators, so that one grep finds a certificate in the CA's, the
// board's and the student's logs.
func SerialHex(serial *big.Int) string { return hex.EncodeToString(serial.Bytes()) }

// SamePublicKey reports whether a and b are the same public key.
func SamePublicKey(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// RSA key sizes, in bits, that pkiboard accepts for a certificate's key (see
// Supported): the CA enrolls no other (weak-key) and the session accepts no
// other.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// PEM block types.
const (
	blockPrivateKey          = "PRIVATE KEY"
	blockEncryptedPrivateKey = "ENCRYPTED PRIVATE KEY"
	blockCertificate         = "CERTIFICATE"
	blockCRL                 = "X509 CRL"
)

// ErrPassphrase is returned when an encrypted key needs a passphrase that was
// not given, or the given one does not decrypt it.
var ErrPassphrase = errors.New("keys: wrong or missing passphrase")

// MarshalPrivatePEM encodes key as PKCS#8 in PEM. With a non-empty passphrase
// the key is encrypted (see EncryptPKCS8).
func MarshalPrivatePEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keys: encode private key: %w", err)
	}
	defer clear(der)
	if len(passphrase) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: blockPrivateKey, Bytes: der}), nil
	}
	enc, err := EncryptPKCS8(der, passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockEncryptedPrivateKey, Bytes: enc}), nil
}

// ParsePrivatePEM decodes a PEM private key: PKCS#8 ("PRIVATE KEY"), encrypted
// PKCS#8 ("ENCRYPTED PRIVATE KEY", which needs passphrase), or the older
// "RSA PRIVATE KEY" and "EC PRIVATE KEY" forms openssl may write.
func ParsePrivatePEM(data, passphrase []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("keys: no PEM block found in private key data")
	}
	der := block.Bytes
	var key any
	var err error
	switch block.Type {
	case blockPrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(der)
	case blockEncryptedPrivateKey:
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%w: the key is encrypted and no passphrase was given", ErrPassphrase)
		}
		plain, derr := DecryptPKCS8(der, passphrase)
		if derr != nil {
			return nil, derr
		}
		defer clear(plain)
		key, err = x509.ParsePKCS8PrivateKey(plain)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	default:
		return nil, fmt.Errorf("keys: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: %T is not a signing key", key)
	}
	switch signer.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		return signer, nil
	}
	// The Go type, as this message has always named it ("ed25519.PublicKey").
	return nil, fmt.Errorf("keys: %T keys are not supported (use ECDSA or RSA)", signer.Public())
}

// ReadPrivateKey reads a PEM private key file written by WritePrivateKey or by
// openssl.
func ReadPrivateKey(path string, passphrase []byte) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer clear(data)
	key, err := ParsePrivatePEM(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// WritePrivateKey writes key to path as (optionally encrypted) PKCS#8 PEM,
// atomically and with mode 0600.
//
// On Windows mode bits are not access control: os.Chmod only sets or clears
// the read-only attribute, so 0600 there means "writable", and the file is
// as private as its directory's ACL, which it inherits. The student keeps its
// keys under the user's profile (student.data_dir = "" is %AppData%), which
// only the user, SYSTEM and Administrators may open. Nothing in pkiboard
// refuses a key for its mode bits, on any system.
func WritePrivateKey(path string, key crypto.Signer, passphrase []byte) error {
	data, err := MarshalPrivatePEM(key, passphrase)
	if err != nil {
		return err
	}
	defer clear(data)
	return durable.WriteFile(path, data, 0o600)
}

// EncodeCertificatePEM returns der as a PEM "CERTIFICATE" block.
func EncodeCertificatePEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockCertificate, Bytes: der})
}

// EncodeCRLPEM returns a CRL's DER as a PEM "X509 CRL" block.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockCRL, Bytes: der})
}

// ParseCRLPEM decodes the first PEM block of data, which must be an "X509
// CRL", and parses the CRL. It checks no signature.
func ParseCRLPEM(data []byte) (*x509.RevocationList, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != blockCRL {
		return nil, fmt.Errorf("keys: no PEM block %q", blockCRL)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keys: parse CRL: %w", err)
	}
	return crl, nil
}

// ParseCertificatesPEM decodes every "CERTIFICATE" block in data, in order. It
// fails if there is none, or if data holds anything but certificates and
// whitespace.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != blockCertificate {
			return nil, fmt.Errorf("keys: PEM block %q is not a certificate", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keys: parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("keys: no certificate found in PEM data")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("keys: unexpected data after the certificates")
	}
	return certs, nil
}

// ReadCertificate reads the first certificate of a PEM file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding.
func Fingerprint(cert *x509.Certificate) [32]byte { return sha256.Sum256(cert.Raw) }

// MatchesFingerprint reports whether cert's SHA-256 fingerprint is want (32
// bytes, as config.Fingerprint holds it). A fingerprint is public, but
// the comparison is constant-time all the same, as every pin check is.
func MatchesFingerprint(cert *x509.Certificate, want []byte) bool {
	fp := Fingerprint(cert)
	return subtle.ConstantTimeCompare(fp[:], want) == 1
}

// FingerprintHex returns Fingerprint as colon-separated uppercase hex, as
// `openssl x509 -fingerprint -sha256` prints it.
func FingerprintHex(cert *x509.Certificate) string {
	fp := Fingerprint(cert)
	h := strings.ToUpper(hex.EncodeToString(fp[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
