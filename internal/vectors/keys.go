package vectors

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// ECKey returns the ECDSA key of label on curve: its scalar is the first
// candidate drawn from Stream("ec key "+label) that is below the curve's order
// and not zero.
func ECKey(curve elliptic.Curve, label string) *ecdsa.PrivateKey {
	size := (curve.Params().BitSize + 7) / 8
	r := Stream("ec key " + label)
	d := make([]byte, size)
	for {
		if _, err := io.ReadFull(r, d); err != nil {
			panic(err)
		}
		if k, err := ecdsa.ParseRawPrivateKey(curve, d); err == nil {
			return k
		}
	}
}

// RSAKey returns the RSA key of label, of bits bits and exponent 65537: its
// primes p and q are the first two numbers of bits/2 bits, drawn from
// Stream("rsa key "+label) with their two top bits and their low bit set,
// that big.Int.ProbablyPrime(32) accepts and that are prime to 65537 less
// one; d is the inverse of 65537 modulo (p-1)(q-1).
func RSAKey(bits int, label string) *rsa.PrivateKey {
	r := Stream("rsa key " + label)
	e := big.NewInt(65537)
	one := big.NewInt(1)
	prime := func() *big.Int {
		buf := make([]byte, bits/16)
		for {
			if _, err := io.ReadFull(r, buf); err != nil {
				panic(err)
			}
			buf[0] |= 0xc0
			buf[len(buf)-1] |= 1
			p := new(big.Int).SetBytes(buf)
			if !p.ProbablyPrime(32) {
				continue
			}
			if new(big.Int).GCD(nil, nil, e, new(big.Int).Sub(p, one)).Cmp(one) == 0 {
				return p
			}
		}
	}
	p, q := prime(), prime()
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537},
		D:         new(big.Int).ModInverse(e, phi),
		Primes:    []*big.Int{p, q},
	}
	k.Precompute()
	if err := k.Validate(); err != nil || k.N.BitLen() != bits {
		panic(fmt.Sprintf("vectors: RSA key %q: %v (%d bits)", label, err, k.N.BitLen()))
	}
	return k
}

// Signer wraps a private key so that it signs deterministically, whatever
// randomness it is handed: ECDSA by RFC 6979 (Go's ecdsa.PrivateKey.Sign
// with a nil source, with the hash the caller names), RSA-PSS with the salt
// PSSSalt gives for the digest (SignPSS), and RSA PKCS #1 v1.5, which is
// deterministic by itself. It also decrypts with an RSA key and does ECDH
// with an ECDSA key, as a student's key must.
type Signer struct{ Key crypto.Signer }

// Public returns the key's public half.
func (s Signer) Public() crypto.PublicKey { return s.Key.Public() }

// Sign signs digest deterministically.
func (s Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	switch k := s.Key.(type) {
	case *ecdsa.PrivateKey:
		return k.Sign(nil, digest, opts)
	case *rsa.PrivateKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return SignPSS(k, pss.HashFunc(), digest, PSSSalt(digest, pss.SaltLength))
		}
		return k.Sign(nil, digest, opts)
	}
	return nil, fmt.Errorf("vectors: no deterministic signature with a %T", s.Key)
}

// Decrypt decrypts with an RSA key.
func (s Signer) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	k, ok := s.Key.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("vectors: not an RSA key")
	}
	return k.Decrypt(rand, msg, opts)
}

// ECDH returns the ECDH key of an ECDSA key.
func (s Signer) ECDH() (*ecdh.PrivateKey, error) {
	k, ok := s.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("vectors: not an ECDSA key")
	}
	return k.ECDH()
}

// PSSSalt returns the salt of the vectors' RSA-PSS signatures of digest:
// the first n bytes of Stream("pss salt " || hex(digest)).
func PSSSalt(digest []byte, n int) []byte {
	return Bytes(fmt.Sprintf("pss salt %x", digest), n)
}

// MGF1 is the mask generation function of RFC 8017 §B.2.1 with hash h.
func MGF1(h crypto.Hash, seed []byte, n int) []byte {
	out := make([]byte, 0, n+h.Size())
	for counter := uint32(0); len(out) < n; counter++ {
		d := h.New()
		d.Write(seed)
		d.Write([]byte{byte(counter >> 24), byte(counter >> 16), byte(counter >> 8), byte(counter)})
		out = d.Sum(out)
	}
	return out[:n]
}

func xorInto(dst, mask []byte) {
	for i := range dst {
		dst[i] ^= mask[i]
	}
}

// EncodePSS is EMSA-PSS-ENCODE of RFC 8017 §9.1.1 for the message hash
// mHash, with hash h, MGF1 of h, the given salt and emBits.
func EncodePSS(h crypto.Hash, mHash, salt []byte, emBits int) ([]byte, error) {
	hLen, sLen, emLen := h.Size(), len(salt), (emBits+7)/8
	if len(mHash) != hLen || emLen < hLen+sLen+2 {
		return nil, errors.New("vectors: PSS encoding error")
	}
	d := h.New()
	d.Write(make([]byte, 8))
	d.Write(mHash)
	d.Write(salt)
	H := d.Sum(nil)
	db := make([]byte, emLen-hLen-1) // PS || 0x01 || salt
	db[len(db)-sLen-1] = 0x01
	copy(db[len(db)-sLen:], salt)
	xorInto(db, MGF1(h, H, len(db)))
	db[0] &= 0xff >> (8*emLen - emBits)
	em := append(db, H...)
	return append(em, 0xbc), nil
}

// SignPSS is RSASSA-PSS-SIGN of RFC 8017 §8.1.1 with the given salt:
// EMSA-PSS-ENCODE of digest with emBits = modBits - 1, then m^d mod n.
func SignPSS(k *rsa.PrivateKey, h crypto.Hash, digest, salt []byte) ([]byte, error) {
	em, err := EncodePSS(h, digest, salt, k.N.BitLen()-1)
	if err != nil {
		return nil, err
	}
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), k.D, k.N)
	return s.FillBytes(make([]byte, k.Size())), nil
}

// EncryptOAEP is RSAES-OAEP-ENCRYPT of RFC 8017 §7.1.1 with SHA-256, MGF1 of
// SHA-256, the label and the 32-byte seed given.
func EncryptOAEP(pub *rsa.PublicKey, msg, label, seed []byte) ([]byte, error) {
	h := crypto.SHA256
	k, hLen := pub.Size(), h.Size()
	if len(msg) > k-2*hLen-2 || len(seed) != hLen {
		return nil, errors.New("vectors: OAEP: message too long, or a seed of the wrong size")
	}
	lHash := sha256.Sum256(label)
	db := make([]byte, k-hLen-1) // lHash || PS || 0x01 || M
	copy(db, lHash[:])
	db[len(db)-len(msg)-1] = 0x01
	copy(db[len(db)-len(msg):], msg)
	xorInto(db, MGF1(h, seed, len(db)))
	maskedSeed := append([]byte(nil), seed...)
	xorInto(maskedSeed, MGF1(h, db, hLen))
	em := append(append([]byte{0}, maskedSeed...), db...)
	c := new(big.Int).Exp(new(big.Int).SetBytes(em), big.NewInt(int64(pub.E)), pub.N)
	return c.FillBytes(make([]byte, k)), nil
}
