package adversary

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"pkiboard/internal/keys"
	"pkiboard/rc4"
	"pkiboard/wire"
)

// This file is what anyone can compute from PROTOCOL.md §5 alone: the
// transcript hashes, the key transport, the X-Wing encapsulation, the key
// schedule and the record format. It is written from the document, not from
// package session, so that an attack that works here works against any
// implementation of the protocol, and one that fails here fails for a reason
// the document gives.

// The context strings and labels of PROTOCOL.md §4.4 and §5.
const (
	contextClientHello  = "pkiboard v2 client hello"
	contextServerVerify = "pkiboard v2 server verify"
	contextBoardStatus  = "pkiboard v2 board status"
	labelSessionKey     = "pkiboard v2 session key"
	labelPQ             = "pkiboard v2 pq"
	exporterPQ          = "pkiboard v2 pq secret"
)

// The cipher suite ids of PROTOCOL.md §5.1. They are copied from the document
// on purpose, not taken from package session: the adversary is an independent
// implementation of the protocol, and reads its numbers where any other
// implementation would.
const (
	suiteAES256CTRHMACSHA256 uint16 = 0x0001
	suiteRC4HMACSHA256       uint16 = 0x0002
	suiteAES256GCM           uint16 = 0x0003
)

// Sizes of PROTOCOL.md §5.
const (
	tagSize       = 32 // HMAC-SHA256 tag of a record
	gcmTagSize    = 16 // the tag of an aes-256-gcm record
	sessionKeyLen = 32
	pqSecretLen   = 32
	rc4Discard    = 1536 // RFC 4345
)

// frameBytes returns payload as one frame on the wire: its 4-byte length, then
// the payload. Transcript hashes are over frames.
func frameBytes(payload []byte) []byte {
	f := make([]byte, 0, wire.HeaderSize+len(payload))
	f = binary.BigEndian.AppendUint32(f, uint32(len(payload)))
	return append(f, payload...)
}

// hashFrames returns SHA-256 over the frames of the payloads, in order.
func hashFrames(payloads ...[]byte) [32]byte {
	h := sha256.New()
	for _, p := range payloads {
		h.Write(frameBytes(p))
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// helloSignedMessage returns what a student signs in her ClientHello, whose
// payload is p: "pkiboard v2 client hello" || 0x00 || SHA-256(p up to and
// including kem_public), that is p without its last field, the signature
// (bytes16: a u16 length and sigLen bytes).
func helloSignedMessage(p []byte, sigLen int) []byte {
	sum := sha256.Sum256(p[:len(p)-2-sigLen])
	msg := append([]byte(contextClientHello), 0)
	return append(msg, sum[:]...)
}

// signHello signs ch with key, as a student signs her hello: the adversary
// can do it with its own key (mallory's), for a hello that carries its own
// certificate.
func signHello(ch *wire.ClientHello, key crypto.Signer) error {
	ch.Signature = make([]byte, 1) // a placeholder of known length, cut off below
	p, err := wire.Marshal(ch)
	if err != nil {
		return err
	}
	sig, err := keys.Sign(key, rand.Reader, helloSignedMessage(p, len(ch.Signature)))
	if err != nil {
		return err
	}
	ch.Signature = sig
	return nil
}

// statusSignedMessage returns what the root signs in a BoardStatus (PROTOCOL.md
// §4.4): "pkiboard v2 board status" || 0x00 || every field but the signature.
func statusSignedMessage(serial []byte, certSHA256 [32]byte, crlNumber uint64, revoked bool, thisUpdate, nextUpdate uint64) []byte {
	msg := append([]byte(contextBoardStatus), 0, byte(len(serial)))
	msg = append(msg, serial...)
	msg = append(msg, certSHA256[:]...)
	msg = binary.BigEndian.AppendUint64(msg, crlNumber)
	if revoked {
		msg = append(msg, 1)
	} else {
		msg = append(msg, 0)
	}
	msg = binary.BigEndian.AppendUint64(msg, thisUpdate)
	return binary.BigEndian.AppendUint64(msg, nextUpdate)
}

// serverVerifyMessage returns what the board signs in ServerVerify:
// "pkiboard v2 server verify" || 0x00 || SHA-256(ClientHello frame || ServerHello frame).
func serverVerifyMessage(helloPair [32]byte) []byte {
	msg := append([]byte(contextServerVerify), 0)
	return append(msg, helloPair[:]...)
}

// keyTransportFor returns the key transport PROTOCOL.md §5.1 prescribes for a
// student certificate key.
func keyTransportFor(pub crypto.PublicKey) (uint8, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return wire.KeyTransportRSAOAEP, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return wire.KeyTransportHPKEP256, nil
		case elliptic.P384():
			return wire.KeyTransportHPKEP384, nil
		}
	}
	return 0, fmt.Errorf("a %T key has no key transport", pub)
}

// sessionKeyLabel is the RSA-OAEP label and HPKE info of the key transport.
func sessionKeyLabel(helloHash [32]byte) []byte {
	return append([]byte(labelSessionKey), helloHash[:]...)
}

// sealSessionKey encrypts key to a certificate's public key, as the board does.
// Anyone can do this: it takes only the public key. It repeats session's
// sealSessionKey on purpose (a duplicate-code finder pairs them): like the rest
// of this file it is derived from PROTOCOL.md §5.1, so that the attacks test
// the document, not our code's reading of it.
func sealSessionKey(pub crypto.PublicKey, helloHash [32]byte, key []byte) ([]byte, error) {
	label := sessionKeyLabel(helloHash)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, k, key, label)
	case *ecdsa.PublicKey:
		ek, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		pk, err := hpke.NewDHKEMPublicKey(ek)
		if err != nil {
			return nil, err
		}
		return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), label, key)
	}
	return nil, fmt.Errorf("cannot encrypt to a %T key", pub)
}

// openSessionKey tries to decrypt encrypted_key with a private key. Only the
// student's own key succeeds.
func openSessionKey(priv crypto.Signer, helloHash [32]byte, encrypted []byte) ([]byte, error) {
	label := sessionKeyLabel(helloHash)
	var key []byte
	var err error
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		key, err = rsa.DecryptOAEP(sha256.New(), nil, k, encrypted, label)
	case *ecdsa.PrivateKey:
		var ek *ecdh.PrivateKey
		if ek, err = k.ECDH(); err != nil {
			return nil, err
		}
		var sk hpke.PrivateKey
		if sk, err = hpke.NewDHKEMPrivateKey(ek); err != nil {
			return nil, err
		}
		key, err = hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), label, encrypted)
	default:
		return nil, fmt.Errorf("cannot decrypt with a %T key", priv)
	}
	if err != nil {
		return nil, err
	}
	if len(key) != sessionKeyLen {
		return nil, fmt.Errorf("decrypted %d bytes, not a %d-byte session key", len(key), sessionKeyLen)
	}
	return key, nil
}

// xwing is the KEM of the forward-secret exchange (0x647a).
var xwing = hpke.MLKEM768X25519()

// pqInfo is the HPKE info of the X-Wing exchange.
func pqInfo(helloHash [32]byte) []byte { return append([]byte(labelPQ), helloHash[:]...) }

// encapsulatePQ runs the board's side of the X-Wing exchange to a student's
// kem_public: it returns kem_ciphertext and the pq secret.
func encapsulatePQ(kemPublic []byte, helloHash [32]byte) (enc, secret []byte, err error) {
	pk, err := xwing.NewPublicKey(kemPublic)
	if err != nil {
		return nil, nil, err
	}
	enc, s, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ExportOnly(), pqInfo(helloHash))
	if err != nil {
		return nil, nil, err
	}
	secret, err = s.Export(exporterPQ, pqSecretLen)
	return enc, secret, err
}

// decapsulatePQ runs the student's side of the X-Wing exchange with sk. With
// any key but the student's ephemeral one it yields a wrong secret (ML-KEM
// rejects implicitly: it does not say so).
func decapsulatePQ(sk hpke.PrivateKey, enc []byte, helloHash [32]byte) ([]byte, error) {
	r, err := hpke.NewRecipient(enc, sk, hpke.HKDFSHA256(), hpke.ExportOnly(), pqInfo(helloHash))
	if err != nil {
		return nil, err
	}
	return r.Export(exporterPQ, pqSecretLen)
}

// trafficKeys are one direction's record keys.
type trafficKeys struct {
	key, mac, iv []byte
}

// prk runs HKDF-Extract of the key schedule (PROTOCOL.md §5.2).
func prk(ikm []byte, clientRandom, serverRandom [32]byte) ([]byte, error) {
	salt := append(clientRandom[:], serverRandom[:]...)
	return hkdf.Extract(sha256.New, ikm, salt)
}

// expand runs HKDF-Expand with "pkiboard v2 <dir> <part>" || TH.
func expand(prk []byte, dir, part string, th [32]byte, n int) ([]byte, error) {
	return hkdf.Expand(sha256.New, prk, "pkiboard v2 "+dir+" "+part+string(th[:]), n)
}

// deriveKeys runs the key schedule of PROTOCOL.md §5.2 for one direction
// ("c2s" or "s2c").
func deriveKeys(ikm []byte, clientRandom, serverRandom, th [32]byte, dir string) (trafficKeys, error) {
	p, err := prk(ikm, clientRandom, serverRandom)
	if err != nil {
		return trafficKeys{}, err
	}
	var k trafficKeys
	for _, part := range []struct {
		name string
		dst  *[]byte
		n    int
	}{{"key", &k.key, 32}, {"mac", &k.mac, 32}, {"iv", &k.iv, 16}} {
		if *part.dst, err = expand(p, dir, part.name, th, part.n); err != nil {
			return trafficKeys{}, err
		}
	}
	return k, nil
}

// recordTag computes a record's tag: HMAC-SHA256(mac_key, seq || type || n ||
// ciphertext).
func recordTag(mac hash.Hash, seq uint64, typ byte, ciphertext []byte) []byte {
	var hdr [13]byte
	binary.BigEndian.PutUint64(hdr[:8], seq)
	hdr[8] = typ
	binary.BigEndian.PutUint32(hdr[9:], uint32(len(ciphertext)))
	mac.Reset()
	mac.Write(hdr[:])
	mac.Write(ciphertext)
	return mac.Sum(nil)
}

// tagVerifies reports whether rec (type, ciphertext, tag) carries the right tag
// for seq under macKey.
func tagVerifies(macKey []byte, seq uint64, rec []byte) bool {
	if len(rec) < 1+tagSize {
		return false
	}
	n := len(rec) - tagSize
	return hmac.Equal(recordTag(hmac.New(sha256.New, macKey), seq, rec[0], rec[1:n]), rec[n:])
}

// tagSizeOf is the size of a record's tag under suite: GCM's, or HMAC-SHA256's.
func tagSizeOf(suite uint16) int {
	if suite == suiteAES256GCM {
		return gcmTagSize
	}
	return tagSize
}

// recordCodec opens or seals one direction's records in order, as the two
// ends do. The adversary has one only when it holds the keys: when it plays
// the board itself.
type recordCodec struct {
	seq    uint64
	mac    hash.Hash
	stream cipher.Stream
	aead   cipher.AEAD // aes-256-gcm, instead of mac and stream
	iv     []byte      // aes-256-gcm: the first 12 bytes of the direction's iv
}

func newRecordCodec(suite uint16, k trafficKeys) (*recordCodec, error) {
	c := &recordCodec{mac: hmac.New(sha256.New, k.mac)}
	switch suite {
	case suiteAES256GCM:
		block, err := aes.NewCipher(k.key)
		if err != nil {
			return nil, err
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
		c.iv = k.iv[:12]
	case suiteAES256CTRHMACSHA256:
		block, err := aes.NewCipher(k.key)
		if err != nil {
			return nil, err
		}
		c.stream = cipher.NewCTR(block, k.iv)
	case suiteRC4HMACSHA256:
		s, err := rc4.NewCipherDrop(k.key, rc4Discard)
		if err != nil {
			return nil, err
		}
		c.stream = s
	default:
		return nil, fmt.Errorf("unknown suite 0x%04x", suite)
	}
	return c, nil
}

// errTag is returned for a record whose tag does not verify.
var errTag = errors.New("the record's tag does not verify")

// gcmNonceAAD returns the nonce (iv XOR seq) and associated data (typ || n)
// of the aes-256-gcm record seq (PROTOCOL.md §5.3).
func (c *recordCodec) gcmNonceAAD(typ byte, n int) (nonce, aad []byte) {
	nonce = append([]byte(nil), c.iv...)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], c.seq)
	for i, b := range seq {
		nonce[4+i] ^= b
	}
	return nonce, binary.BigEndian.AppendUint32([]byte{typ}, uint32(n))
}

// open checks rec's tag and returns its message (type byte, then plaintext).
func (c *recordCodec) open(rec []byte) ([]byte, error) {
	if c.aead != nil {
		if len(rec) < 1+gcmTagSize {
			return nil, errTag
		}
		nonce, aad := c.gcmNonceAAD(rec[0], len(rec)-1-gcmTagSize)
		body, err := c.aead.Open(nil, nonce, rec[1:], aad)
		if err != nil {
			return nil, errTag
		}
		c.seq++
		return append([]byte{rec[0]}, body...), nil
	}
	if len(rec) < 1+tagSize {
		return nil, errTag
	}
	n := len(rec) - tagSize
	if !hmac.Equal(recordTag(c.mac, c.seq, rec[0], rec[1:n]), rec[n:]) {
		return nil, errTag
	}
	msg := append([]byte(nil), rec[:n]...)
	c.stream.XORKeyStream(msg[1:], msg[1:])
	c.seq++
	return msg, nil
}

// seal makes a record of msg (type byte, then body).
func (c *recordCodec) seal(msg []byte) []byte {
	if c.aead != nil {
		nonce, aad := c.gcmNonceAAD(msg[0], len(msg)-1)
		c.seq++
		return c.aead.Seal([]byte{msg[0]}, nonce, msg[1:], aad)
	}
	rec := append([]byte(nil), msg...)
	c.stream.XORKeyStream(rec[1:], rec[1:])
	tag := recordTag(c.mac, c.seq, rec[0], rec[1:])
	c.seq++
	return append(rec, tag...)
}
