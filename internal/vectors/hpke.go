package vectors

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha3"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HPKE identifiers (RFC 9180 §7, draft-ietf-hpke-pq).
const (
	KEMP256  uint16 = 0x0010 // DHKEM(P-256, HKDF-SHA256)
	KEMP384  uint16 = 0x0011 // DHKEM(P-384, HKDF-SHA384)
	KEMXWing uint16 = 0x647a // MLKEM768-X25519

	KDFSHA256 uint16 = 0x0001
	KDFSHA384 uint16 = 0x0002

	AEADAES128GCM  uint16 = 0x0001
	AEADAES256GCM  uint16 = 0x0002
	AEADChaCha20   uint16 = 0x0003
	AEADExportOnly uint16 = 0xffff
)

// kdfHash returns the hash of an HKDF id.
func kdfHash(id uint16) (crypto.Hash, error) {
	switch id {
	case KDFSHA256:
		return crypto.SHA256, nil
	case KDFSHA384:
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("vectors: KDF 0x%04x is not implemented here", id)
}

func i2osp2(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

// LabeledExtract is RFC 9180 §4's LabeledExtract with HKDF of h.
func LabeledExtract(h crypto.Hash, suiteID, salt []byte, label string, ikm []byte) []byte {
	labeled := append(append(append([]byte("HPKE-v1"), suiteID...), label...), ikm...)
	prk, err := hkdf.Extract(h.New, labeled, salt)
	if err != nil {
		panic(err)
	}
	return prk
}

// LabeledExpand is RFC 9180 §4's LabeledExpand with HKDF of h.
func LabeledExpand(h crypto.Hash, suiteID, prk []byte, label string, info []byte, n int) []byte {
	labeled := append(append(append(append(i2osp2(n), "HPKE-v1"...), suiteID...), label...), info...)
	out, err := hkdf.Expand(h.New, prk, string(labeled), n)
	if err != nil {
		panic(err)
	}
	return out
}

// DHKEMDecap returns the shared secret of DHKEM (RFC 9180 §4.1) that enc
// carries to the recipient key sk: DH(sk, enc), then ExtractAndExpand with
// kem_context = enc || pk(sk). kem is KEMP256 or KEMP384.
func DHKEMDecap(kem uint16, sk *ecdh.PrivateKey, enc []byte) ([]byte, error) {
	h, n := crypto.SHA256, 32
	if kem == KEMP384 {
		h, n = crypto.SHA384, 48
	} else if kem != KEMP256 {
		return nil, fmt.Errorf("vectors: KEM 0x%04x is not a DHKEM here", kem)
	}
	pkE, err := sk.Curve().NewPublicKey(enc)
	if err != nil {
		return nil, err
	}
	dh, err := sk.ECDH(pkE)
	if err != nil {
		return nil, err
	}
	suiteID := append([]byte("KEM"), i2osp2(int(kem))...)
	kemContext := append(append([]byte(nil), enc...), sk.PublicKey().Bytes()...)
	prk := LabeledExtract(h, suiteID, nil, "eae_prk", dh)
	return LabeledExpand(h, suiteID, prk, "shared_secret", kemContext, n), nil
}

// xwingLabel is the label of X-Wing's combiner: `\.//^\`.
const xwingLabel = "\\.//^\\"

// XWingKey is an X-Wing key pair (draft-connolly-cfrg-xwing-kem, as
// draft-ietf-hpke-pq uses it for KEM 0x647a) expanded from its 32-byte seed.
type XWingKey struct {
	PQ        *mlkem.DecapsulationKey768
	T         *ecdh.PrivateKey
	PublicKey []byte // ML-KEM-768 encapsulation key (1184 bytes) || X25519 public key (32)
}

// XWingFromSeed expands a seed: SHAKE256(seed) gives 64 bytes, the ML-KEM-768
// seed (d || z), then 32 bytes, the X25519 private key.
func XWingFromSeed(seed []byte) (*XWingKey, error) {
	if len(seed) != 32 {
		return nil, errors.New("vectors: an X-Wing seed has 32 bytes")
	}
	s := sha3.NewSHAKE256()
	s.Write(seed)
	expanded := make([]byte, mlkem.SeedSize+32)
	if _, err := io.ReadFull(s, expanded); err != nil {
		return nil, err
	}
	pq, err := mlkem.NewDecapsulationKey768(expanded[:mlkem.SeedSize])
	if err != nil {
		return nil, err
	}
	t, err := ecdh.X25519().NewPrivateKey(expanded[mlkem.SeedSize:])
	if err != nil {
		return nil, err
	}
	pk := append(pq.EncapsulationKey().Bytes(), t.PublicKey().Bytes()...)
	return &XWingKey{PQ: pq, T: t, PublicKey: pk}, nil
}

// xwingCombine is X-Wing's combiner: SHA3-256(ss_M || ss_X || ct_X || pk_X || label).
func xwingCombine(ssPQ, ssT, ctT, pkT []byte) []byte {
	h := sha3.New256()
	for _, b := range [][]byte{ssPQ, ssT, ctT, pkT, []byte(xwingLabel)} {
		h.Write(b)
	}
	return h.Sum(nil)
}

// XWingEncapsulate encapsulates to the X-Wing public key pk with the 64
// bytes of randomness r, as draft-ietf-hpke-pq's vectors do (their ikmE):
// r[:32] is ML-KEM-768's message m (ML-KEM.Encaps_internal, FIPS 203), r[32:]
// the X25519 ephemeral private key. It returns enc = ct_M || ct_X (1120
// bytes) and the shared secret.
func XWingEncapsulate(pk, r []byte) (enc, ss []byte, err error) {
	if len(pk) != mlkem.EncapsulationKeySize768+32 || len(r) != 64 {
		return nil, nil, errors.New("vectors: an X-Wing public key has 1216 bytes and its encapsulation takes 64 random bytes")
	}
	ek, err := mlkem.NewEncapsulationKey768(pk[:mlkem.EncapsulationKeySize768])
	if err != nil {
		return nil, nil, err
	}
	ssPQ, ctPQ, err := mlkemtest.Encapsulate768(ek, r[:32])
	if err != nil {
		return nil, nil, err
	}
	eph, err := ecdh.X25519().NewPrivateKey(r[32:])
	if err != nil {
		return nil, nil, err
	}
	pkT, err := ecdh.X25519().NewPublicKey(pk[mlkem.EncapsulationKeySize768:])
	if err != nil {
		return nil, nil, err
	}
	ssT, err := eph.ECDH(pkT)
	if err != nil {
		return nil, nil, err
	}
	ctT := eph.PublicKey().Bytes()
	return append(ctPQ, ctT...), xwingCombine(ssPQ, ssT, ctT, pkT.Bytes()), nil
}

// Decapsulate returns the shared secret that enc carries to k.
func (k *XWingKey) Decapsulate(enc []byte) ([]byte, error) {
	if len(enc) != mlkem.CiphertextSize768+32 {
		return nil, errors.New("vectors: an X-Wing ciphertext has 1120 bytes")
	}
	ssPQ, err := k.PQ.Decapsulate(enc[:mlkem.CiphertextSize768])
	if err != nil {
		return nil, err
	}
	ctT := enc[mlkem.CiphertextSize768:]
	pkE, err := ecdh.X25519().NewPublicKey(ctT)
	if err != nil {
		return nil, err
	}
	ssT, err := k.T.ECDH(pkE)
	if err != nil {
		return nil, err
	}
	return xwingCombine(ssPQ, ssT, ctT, k.T.PublicKey().Bytes()), nil
}

// Context is an HPKE context in base mode (RFC 9180 §5.1): the outputs of
// the key schedule.
type Context struct {
	Suite          []byte // "HPKE" || kem_id || kdf_id || aead_id
	Hash           crypto.Hash
	PSKIDHash      []byte
	InfoHash       []byte
	Secret         []byte
	Key            []byte // empty with the export-only AEAD
	BaseNonce      []byte // empty with the export-only AEAD
	ExporterSecret []byte
	seq            uint64
}

// KeySchedule runs RFC 9180's KeyScheduleS/R in base mode (no PSK) for the
// shared secret and info, with KDF kdf (HKDF-SHA256 or -SHA384) and AEAD
// aead (AES-128-GCM, AES-256-GCM, ChaCha20Poly1305 or export-only).
func KeySchedule(kem, kdf, aead uint16, sharedSecret, info []byte) (*Context, error) {
	h, err := kdfHash(kdf)
	if err != nil {
		return nil, err
	}
	nk, nn := 0, 0
	switch aead {
	case AEADAES128GCM:
		nk, nn = 16, 12
	case AEADAES256GCM, AEADChaCha20:
		nk, nn = 32, 12
	case AEADExportOnly:
	default:
		return nil, fmt.Errorf("vectors: AEAD 0x%04x is unknown", aead)
	}
	c := &Context{Hash: h, Suite: append(append(append([]byte("HPKE"), i2osp2(int(kem))...), i2osp2(int(kdf))...), i2osp2(int(aead))...)}
	c.PSKIDHash = LabeledExtract(h, c.Suite, nil, "psk_id_hash", nil)
	c.InfoHash = LabeledExtract(h, c.Suite, nil, "info_hash", info)
	ksContext := append(append([]byte{0}, c.PSKIDHash...), c.InfoHash...)
	c.Secret = LabeledExtract(h, c.Suite, sharedSecret, "secret", nil)
	if nk > 0 {
		c.Key = LabeledExpand(h, c.Suite, c.Secret, "key", ksContext, nk)
		c.BaseNonce = LabeledExpand(h, c.Suite, c.Secret, "base_nonce", ksContext, nn)
	}
	c.ExporterSecret = LabeledExpand(h, c.Suite, c.Secret, "exp", ksContext, h.Size())
	return c, nil
}

// Export is RFC 9180 §5.3's secret export.
func (c *Context) Export(exporterContext []byte, n int) []byte {
	return LabeledExpand(c.Hash, c.Suite, c.ExporterSecret, "sec", exporterContext, n)
}

// aesGCM returns the context's AEAD, for AES-GCM suites.
func (c *Context) aesGCM() (cipher.AEAD, error) {
	if len(c.Key) == 0 {
		return nil, errors.New("vectors: an export-only context has no AEAD")
	}
	b, err := aes.NewCipher(c.Key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// nonce returns base_nonce XOR the sequence number (RFC 9180 §5.2).
func (c *Context) nonce() []byte {
	n := append([]byte(nil), c.BaseNonce...)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], c.seq)
	xorInto(n[len(n)-8:], seq[:])
	return n
}

// Seal encrypts the next message with AES-GCM (RFC 9180 §5.2).
func (c *Context) Seal(aad, pt []byte) ([]byte, error) {
	a, err := c.aesGCM()
	if err != nil {
		return nil, err
	}
	ct := a.Seal(nil, c.nonce(), pt, aad)
	c.seq++
	return ct, nil
}

// Open decrypts the next message with AES-GCM (RFC 9180 §5.2).
func (c *Context) Open(aad, ct []byte) ([]byte, error) {
	a, err := c.aesGCM()
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, c.nonce(), ct, aad)
	if err != nil {
		return nil, err
	}
	c.seq++
	return pt, nil
}
