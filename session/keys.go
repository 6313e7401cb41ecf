package session

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"pkiboard/wire"
)

// Key sizes of PROTOCOL.md §5.
const (
	sessionKeyLen = 32 // the session key the board draws
	pqSecretLen   = 32 // the X-Wing exporter output
	keyLen        = 32 // a record cipher key (AES-256, or RC4 with 256 bits)
	macKeyLen     = 32 // an HMAC-SHA256 key
	ivLen         = 16 // an AES-CTR initial counter block

	xwingCiphertextLen = 1120 // an X-Wing encapsulation (PROTOCOL.md §5.1)
)

// The HPKE parameters of the key transport and of the X-Wing exchange
// (PROTOCOL.md §5.1).
var (
	hpkeKDF  = hpke.HKDFSHA256()
	hpkeAEAD = hpke.AES256GCM()
	xwing    = hpke.MLKEM768X25519()
)

// sealSessionKey encrypts the session key to the student's certificate key with
// the key transport kt: RSA-OAEP-SHA256 with the label, or single-shot HPKE
// base mode with the info, where label and info are "pkiboard v2 session key"
// || H_hello.
func sealSessionKey(rand io.Reader, pub crypto.PublicKey, kt uint8, helloHash [32]byte, key []byte) ([]byte, error) {
	label := append([]byte(labelSessionKey), helloHash[:]...)
	switch kt {
	case wire.KeyTransportRSAOAEP:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("key transport RSA-OAEP for a key that is not RSA")
		}
		return rsa.EncryptOAEP(sha256.New(), rand, k, key, label)
	case wire.KeyTransportHPKEP256, wire.KeyTransportHPKEP384:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return nil, errors.New("key transport HPKE for a key that is not ECDSA")
		}
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		pk, err := hpke.NewDHKEMPublicKey(ek)
		if err != nil {
			return nil, err
		}
		return hpke.Seal(pk, hpkeKDF, hpkeAEAD, label, key)
	}
	return nil, fmt.Errorf("unknown key transport %d", kt)
}

// openSessionKey decrypts encrypted_key with the student's private key. It
// returns an error unless the result is exactly a session key.
func openSessionKey(rand io.Reader, priv crypto.Signer, dh func() (*ecdh.PrivateKey, error), kt uint8, helloHash [32]byte, encrypted []byte) ([]byte, error) {
	label := append([]byte(labelSessionKey), helloHash[:]...)
	var key []byte
	var err error
	switch kt {
	case wire.KeyTransportRSAOAEP:
		d, ok := priv.(crypto.Decrypter)
		if !ok {
			return nil, errors.New("the RSA key cannot decrypt")
		}
		key, err = d.Decrypt(rand, encrypted, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256, Label: label})
	case wire.KeyTransportHPKEP256, wire.KeyTransportHPKEP384:
		ek, kerr := dh()
		if kerr != nil {
			return nil, kerr
		}
		// ek is a copy of the long-term key (ClientConfig keeps it as long
		// as its Key); crypto/ecdh offers no way to erase it.
		sk, kerr := hpke.NewDHKEMPrivateKey(ek)
		if kerr != nil {
			return nil, kerr
		}
		key, err = hpke.Open(sk, hpkeKDF, hpkeAEAD, label, encrypted)
	default:
		return nil, fmt.Errorf("unknown key transport %d", kt)
	}
	if err != nil {
		return nil, err
	}
	if len(key) != sessionKeyLen {
		clear(key)
		return nil, fmt.Errorf("the session key has %d bytes, not %d", len(key), sessionKeyLen)
	}
	return key, nil
}

// pqInfo returns the HPKE info of the X-Wing exchange: "pkiboard v2 pq" ||
// H_hello.
func pqInfo(helloHash [32]byte) []byte {
	return append([]byte(labelPQ), helloHash[:]...)
}

// encapsulatePQ runs the board's side of the X-Wing exchange: HPKE base mode
// with KEM 0x647a, HKDF-SHA256 and the export-only AEAD to the student's
// kem_public. It returns kem_ciphertext and the pq secret.
func encapsulatePQ(pk hpke.PublicKey, helloHash [32]byte) (enc, secret []byte, err error) {
	enc, sender, err := hpke.NewSender(pk, hpkeKDF, hpke.ExportOnly(), pqInfo(helloHash))
	if err != nil {
		return nil, nil, err
	}
	secret, err = sender.Export(exporterPQ, pqSecretLen)
	if err != nil {
		return nil, nil, err
	}
	return enc, secret, nil
}

// decapsulatePQ runs the student's side of the X-Wing exchange and returns the
// pq secret.
func decapsulatePQ(sk hpke.PrivateKey, enc []byte, helloHash [32]byte) ([]byte, error) {
	r, err := hpke.NewRecipient(enc, sk, hpkeKDF, hpke.ExportOnly(), pqInfo(helloHash))
	if err != nil {
		return nil, err
	}
	return r.Export(exporterPQ, pqSecretLen)
}

// trafficKeys are the keys of one direction of records.
type trafficKeys struct {
	key [keyLen]byte
	mac [macKeyLen]byte
	iv  [ivLen]byte
}

func (k *trafficKeys) wipe() {
	clear(k.key[:])
	clear(k.mac[:])
	clear(k.iv[:])
}

// deriveKeys runs the key schedule of PROTOCOL.md §5.2:
//
//	PRK     = HKDF-Extract(SHA-256, salt = client_random || server_random,
//	                                IKM  = session_key || pq_secret)
//	c2s_key = HKDF-Expand(PRK, "pkiboard v2 c2s key" || TH, 32)
//	c2s_mac = HKDF-Expand(PRK, "pkiboard v2 c2s mac" || TH, 32)
//	c2s_iv  = HKDF-Expand(PRK, "pkiboard v2 c2s iv"  || TH, 16)
//
// and likewise for s2c. The IKM and the PRK are erased before it returns; the
// caller erases sessionKey, pqSecret and, once the ciphers are made, the
// returned keys.
func deriveKeys(sessionKey, pqSecret []byte, clientRandom, serverRandom, th [32]byte) (c2s, s2c trafficKeys, err error) {
	ikm := make([]byte, 0, len(sessionKey)+len(pqSecret))
	ikm = append(append(ikm, sessionKey...), pqSecret...)
	defer clear(ikm)
	salt := make([]byte, 0, 2*wire.RandomLen)
	salt = append(append(salt, clientRandom[:]...), serverRandom[:]...)
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return c2s, s2c, err
	}
	defer clear(prk)
	for _, d := range []struct {
		dir  string
		keys *trafficKeys
	}{{"c2s", &c2s}, {"s2c", &s2c}} {
		for _, part := range []struct {
			name string
			dst  []byte
		}{{"key", d.keys.key[:]}, {"mac", d.keys.mac[:]}, {"iv", d.keys.iv[:]}} {
			info := "pkiboard v2 " + d.dir + " " + part.name + string(th[:])
			out, err := hkdf.Expand(sha256.New, prk, info, len(part.dst))
			if err != nil {
				c2s.wipe()
				s2c.wipe()
				return c2s, s2c, err
			}
			copy(part.dst, out)
			clear(out)
		}
	}
	return c2s, s2c, nil
}
