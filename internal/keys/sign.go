package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
)

// ErrUnsupportedKey matches the error of Sign and Verify for a key that has no
// signature scheme (PROTOCOL.md §5.1); the error is also an
// *UnsupportedKeyError that says which key it was.
var ErrUnsupportedKey = errors.New("keys: no signature scheme for the key")

// ErrBadSignature matches the error of Verify for a signature that does not
// verify.
var ErrBadSignature = errors.New("keys: signature does not verify")

// scheme is a signature scheme of PROTOCOL.md §5.1.
type scheme struct {
	hash crypto.Hash
	pss  bool
}

// signatureScheme returns the scheme for a public key: ECDSA P-256 with
// SHA-256, ECDSA P-384 with SHA-384, RSA-PSS with SHA-256 and a 32-byte salt.
func signatureScheme(pub crypto.PublicKey) (scheme, error) {
	if err := Supported(pub); err != nil {
		return scheme{}, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return scheme{hash: crypto.SHA384}, nil
		}
		return scheme{hash: crypto.SHA256}, nil
	default: // Supported allows RSA and ECDSA only
		return scheme{hash: crypto.SHA256, pss: true}, nil
	}
}

// digest hashes msg with the scheme's hash.
func (s scheme) digest(msg []byte) []byte {
	if s.hash == crypto.SHA384 {
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// pssOptions are the RSA-PSS parameters of PROTOCOL.md §5.1: SHA-256, MGF1 with
// SHA-256, a 32-byte salt (the verifier requires exactly 32).
var pssOptions = &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// CanSign reports, with an error saying why not, whether pub has a signature
// scheme in PROTOCOL.md §5.1.
func CanSign(pub crypto.PublicKey) error {
	_, err := signatureScheme(pub)
	return err
}

// Sign signs msg with key, in the scheme its public key calls for (PROTOCOL.md
// §5.1): ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384 (ASN.1 DER
// signatures), RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt. msg is the
// whole message (context string, zero byte, content): Sign hashes it. rand is
// passed to key.Sign (Go's ECDSA draws from crypto/rand whatever it is given).
func Sign(key crypto.Signer, rand io.Reader, msg []byte) ([]byte, error) {
	s, err := signatureScheme(key.Public())
	if err != nil {
		return nil, err
	}
	var opts crypto.SignerOpts = s.hash
	if s.pss {
		opts = pssOptions
	}
	sig, err := key.Sign(rand, s.digest(msg), opts)
	if err != nil {
		return nil, fmt.Errorf("keys: signing: %w", err)
	}
	return sig, nil
}

// Verify checks sig, a signature by Sign, over msg with pub. The error matches
// ErrBadSignature, or ErrUnsupportedKey for a key that has no scheme.
func Verify(pub crypto.PublicKey, msg, sig []byte) error {
	s, err := signatureScheme(pub)
	if err != nil {
		return err
	}
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, s.digest(msg), sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPSS(k, s.hash, s.digest(msg), sig, pssOptions) == nil
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
