package session

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"pkiboard/internal/vectors"
)

// The published vectors of the primitives the session composes, copied into
// testdata/vectors with their sources (see testdata/README.md). RC4's, RFC
// 6229's, are checked by package rc4 (TestRFC6229, TestRFC6229Discard).

// TestPublishedHKDF checks the key schedule's HKDF-SHA256 (crypto/hkdf, as
// deriveKeys calls it: Extract, then Expand) against RFC 5869's test cases 1
// to 3.
func TestPublishedHKDF(t *testing.T) {
	var f struct {
		Source string
		Cases  []struct {
			Case            string
			IKM, Salt, Info vectors.Hex
			Length          int
			PRK, OKM        vectors.Hex
		}
	}
	vectors.Load(t, "rfc5869-hkdf-sha256.json", &f)
	if len(f.Cases) != 3 {
		t.Fatalf("%d cases, want 3", len(f.Cases))
	}
	for _, c := range f.Cases {
		prk, err := hkdf.Extract(sha256.New, c.IKM, c.Salt)
		if err != nil || !bytes.Equal(prk, c.PRK) {
			t.Errorf("%s: PRK %x, %v; want %x", c.Case, prk, err, c.PRK)
		}
		okm, err := hkdf.Expand(sha256.New, c.PRK, string(c.Info), c.Length)
		if err != nil || !bytes.Equal(okm, c.OKM) {
			t.Errorf("%s: OKM %x, %v; want %x", c.Case, okm, err, c.OKM)
		}
	}
}

// hpkeVector is an entry of the HPKE vector files, in the CFRG format.
type hpkeVector struct {
	Mode                   uint16      `json:"mode"`
	KEM                    uint16      `json:"kem_id"`
	KDF                    uint16      `json:"kdf_id"`
	AEAD                   uint16      `json:"aead_id"`
	Info                   vectors.Hex `json:"info"`
	IkmE                   vectors.Hex `json:"ikmE"`
	IkmR                   vectors.Hex `json:"ikmR"`
	SkRm                   vectors.Hex `json:"skRm"`
	PkRm                   vectors.Hex `json:"pkRm"`
	Enc                    vectors.Hex `json:"enc"`
	SharedSecret           vectors.Hex `json:"shared_secret"`
	SuiteID                vectors.Hex `json:"suite_id"`
	Key                    vectors.Hex `json:"key"`
	BaseNonce              vectors.Hex `json:"base_nonce"`
	ExporterSecret         vectors.Hex `json:"exporter_secret"`
	EncryptionsAccumulated vectors.Hex `json:"encryptions_accumulated"`
	ExportsAccumulated     vectors.Hex `json:"exports_accumulated"`
	Encryptions            []struct {
		AAD   vectors.Hex `json:"aad"`
		CT    vectors.Hex `json:"ct"`
		Nonce vectors.Hex `json:"nonce"`
		PT    vectors.Hex `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context vectors.Hex `json:"exporter_context"`
		L       int         `json:"L"`
		Value   vectors.Hex `json:"exported_value"`
	} `json:"exports"`
}

// sameAsGOROOT checks that our copy of a vector is the entry of the file Go
// ships, when this machine has Go's sources; it says so when it has not.
func sameAsGOROOT(t *testing.T, file string, v hpkeVector) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "crypto", "hpke", "testdata", file))
	if err != nil {
		t.Logf("the provenance of the copy is not checked: %v", err)
		return
	}
	var all []hpkeVector
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	ours, _ := json.Marshal(v)
	for _, w := range all {
		if theirs, _ := json.Marshal(w); bytes.Equal(theirs, ours) {
			return
		}
	}
	t.Errorf("the copied entry (KEM 0x%04x, KDF 0x%04x, AEAD 0x%04x) is not an entry of GOROOT's %s", v.KEM, v.KDF, v.AEAD, file)
}

// drawInput is hpke_test.go's drawRandomInput: a length byte, then that many
// bytes.
func drawInput(t *testing.T, r io.Reader) []byte {
	var l [1]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, l[0])
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishedHPKEP256 checks key transport 2 — crypto/hpke with the KEM
// DHKEM(P-256), the KDF and AEAD of this package (hpkeKDF, hpkeAEAD), the
// recipient's key made from an ECDSA key as openSessionKey makes it —
// against the RFC 9180 vector of that suite, and the vectors package's HPKE
// (which checks this package's vectors) against the same vector.
func TestPublishedHPKEP256(t *testing.T) {
	var f struct {
		Source string
		Vector hpkeVector
	}
	vectors.Load(t, "hpke-rfc9180-p256.json", &f)
	v := f.Vector
	sameAsGOROOT(t, "rfc9180.json", v)
	if v.KEM != 0x0010 || v.KDF != hpkeKDF.ID() || v.AEAD != hpkeAEAD.ID() || v.Mode != 0 {
		t.Fatalf("the vector is of mode %d, suite 0x%04x 0x%04x 0x%04x; key transport 2 is mode 0, 0x0010 0x%04x 0x%04x",
			v.Mode, v.KEM, v.KDF, v.AEAD, hpkeKDF.ID(), hpkeAEAD.ID())
	}
	kem := hpke.DHKEM(ecdh.P256())
	sk, err := kem.DeriveKeyPair(v.IkmR)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := sk.Bytes(); !bytes.Equal(b, v.SkRm) || !bytes.Equal(sk.PublicKey().Bytes(), v.PkRm) {
		t.Fatalf("DeriveKeyPair(ikmR): %x, %x; want %x, %x", b, sk.PublicKey().Bytes(), v.SkRm, v.PkRm)
	}
	if eph, err := kem.DeriveKeyPair(v.IkmE); err != nil || !bytes.Equal(eph.PublicKey().Bytes(), v.Enc) {
		t.Fatalf("DeriveKeyPair(ikmE) is not enc: %v", err)
	}
	// The recipient's key as openSessionKey makes it: from an ECDSA key.
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), v.SkRm)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := ek.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	hk, err := hpke.NewDHKEMPrivateKey(dk)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(v.Enc, hk, hpkeKDF, hpkeAEAD, v.Info)
	if err != nil {
		t.Fatal(err)
	}

	// The vectors package's HPKE, from the recipient's side.
	ss, err := vectors.DHKEMDecap(vectors.KEMP256, dk, v.Enc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := vectors.KeySchedule(v.KEM, v.KDF, v.AEAD, ss, v.Info)
	if err != nil {
		t.Fatal(err)
	}

	source, sink := sha3.NewSHAKE128(), sha3.NewSHAKE128()
	for range 1000 {
		aad, pt := drawInput(t, source), drawInput(t, source)
		ct, err := ctx.Seal(aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		sink.Write(ct)
		if got, err := r.Open(aad, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("crypto/hpke opens %x, %v; want %x", got, err, pt)
		}
	}
	acc := make([]byte, 16)
	sink.Read(acc)
	if !bytes.Equal(acc, v.EncryptionsAccumulated) {
		t.Errorf("encryptions accumulated %x, want %x", acc, v.EncryptionsAccumulated)
	}

	source, sink = sha3.NewSHAKE128(), sha3.NewSHAKE128()
	for l := range 1000 {
		exporterContext := drawInput(t, source)
		got, err := r.Export(string(exporterContext), l)
		if err != nil {
			t.Fatal(err)
		}
		if ours := ctx.Export(exporterContext, l); !bytes.Equal(ours, got) {
			t.Fatalf("export %d: the vectors package has %x, crypto/hpke %x", l, ours, got)
		}
		sink.Write(got)
	}
	sink.Read(acc)
	if !bytes.Equal(acc, v.ExportsAccumulated) {
		t.Errorf("exports accumulated %x, want %x", acc, v.ExportsAccumulated)
	}
}

// TestPublishedHPKEPQ checks the X-Wing exchange — crypto/hpke's X-Wing
// (this package's xwing) with HKDF-SHA256 (hpkeKDF) — and the KEM of key
// transport 3, DHKEM(P-384), against draft-ietf-hpke-pq's vectors, and the
// vectors package's X-Wing and HPKE against the same.
func TestPublishedHPKEPQ(t *testing.T) {
	var f struct {
		Source  string
		Vectors []hpkeVector
	}
	vectors.Load(t, "hpke-pq.json", &f)
	if len(f.Vectors) != 2 {
		t.Fatalf("%d vectors, want 2", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		sameAsGOROOT(t, "hpke-pq.json", v)
	}

	t.Run("X-Wing", func(t *testing.T) {
		v := f.Vectors[0]
		if v.KEM != xwing.ID() || v.KDF != hpkeKDF.ID() || v.Mode != 0 {
			t.Fatalf("the vector is of mode %d, KEM 0x%04x, KDF 0x%04x; want 0, 0x%04x, 0x%04x", v.Mode, v.KEM, v.KDF, xwing.ID(), hpkeKDF.ID())
		}
		sk, err := xwing.DeriveKeyPair(v.IkmR)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := sk.Bytes(); !bytes.Equal(b, v.SkRm) {
			t.Fatalf("DeriveKeyPair(ikmR): %x, want %x", b, v.SkRm)
		}
		// The student's key as sendClientHello makes it: from a seed.
		sk, err = xwing.NewPrivateKey(v.SkRm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk.PublicKey().Bytes(), v.PkRm) {
			t.Fatal("the public key of skRm is not pkRm")
		}
		aead, err := hpke.NewAEAD(v.AEAD)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hpke.NewRecipient(v.Enc, sk, hpkeKDF, aead, v.Info)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range v.Encryptions {
			if got, err := r.Open(e.AAD, e.CT); err != nil || !bytes.Equal(got, e.PT) {
				t.Errorf("encryption %d: crypto/hpke opens %x, %v; want %x", i, got, err, e.PT)
			}
		}
		for i, e := range v.Exports {
			if got, err := r.Export(string(e.Context), e.L); err != nil || !bytes.Equal(got, e.Value) {
				t.Errorf("export %d: crypto/hpke exports %x, %v; want %x", i, got, err, e.Value)
			}
		}

		// The vectors package: the key, the derandomized encapsulation, the
		// shared secret and the key schedule.
		k, err := vectors.XWingFromSeed(v.SkRm)
		if err != nil || !bytes.Equal(k.PublicKey, v.PkRm) {
			t.Fatalf("XWingFromSeed: %v", err)
		}
		enc, ss, err := vectors.XWingEncapsulate(v.PkRm, v.IkmE)
		if err != nil || !bytes.Equal(enc, v.Enc) || !bytes.Equal(ss, v.SharedSecret) {
			t.Fatalf("XWingEncapsulate(pkRm, ikmE): enc %x…, shared secret %x, %v; want %x…, %x", enc[:8], ss, err, v.Enc[:8], v.SharedSecret)
		}
		if got, err := k.Decapsulate(v.Enc); err != nil || !bytes.Equal(got, v.SharedSecret) {
			t.Fatalf("Decapsulate: %x, %v", got, err)
		}
		ctx, err := vectors.KeySchedule(v.KEM, v.KDF, v.AEAD, ss, v.Info)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ctx.Suite, v.SuiteID) || !bytes.Equal(ctx.Key, v.Key) || !bytes.Equal(ctx.BaseNonce, v.BaseNonce) || !bytes.Equal(ctx.ExporterSecret, v.ExporterSecret) {
			t.Fatalf("key schedule: suite %x key %x nonce %x exporter %x", ctx.Suite, ctx.Key, ctx.BaseNonce, ctx.ExporterSecret)
		}
		for i, e := range v.Exports {
			if got := ctx.Export(e.Context, e.L); !bytes.Equal(got, e.Value) {
				t.Errorf("export %d: the vectors package exports %x, want %x", i, got, e.Value)
			}
		}
	})

	t.Run("DHKEM(P-384)", func(t *testing.T) {
		v := f.Vectors[1]
		kem := hpke.DHKEM(ecdh.P384())
		if v.KEM != kem.ID() || v.Mode != 0 {
			t.Fatalf("the vector is of mode %d, KEM 0x%04x; want 0, 0x%04x", v.Mode, v.KEM, kem.ID())
		}
		sk, err := kem.DeriveKeyPair(v.IkmR)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := sk.Bytes(); !bytes.Equal(b, v.SkRm) || !bytes.Equal(sk.PublicKey().Bytes(), v.PkRm) {
			t.Fatal("DeriveKeyPair(ikmR) is not skRm, pkRm")
		}
		if eph, err := kem.DeriveKeyPair(v.IkmE); err != nil || !bytes.Equal(eph.PublicKey().Bytes(), v.Enc) {
			t.Fatalf("DeriveKeyPair(ikmE) is not enc: %v", err)
		}
		ek, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), v.SkRm)
		if err != nil {
			t.Fatal(err)
		}
		dk, err := ek.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		if ss, err := vectors.DHKEMDecap(vectors.KEMP384, dk, v.Enc); err != nil || !bytes.Equal(ss, v.SharedSecret) {
			t.Fatalf("the vectors package's shared secret: %x, %v; want %x", ss, err, v.SharedSecret)
		}
		hk, err := hpke.NewDHKEMPrivateKey(dk)
		if err != nil {
			t.Fatal(err)
		}
		kdf, err := hpke.NewKDF(v.KDF)
		if err != nil {
			t.Fatal(err)
		}
		aead, err := hpke.NewAEAD(v.AEAD)
		if err != nil {
			t.Fatal(err)
		}
		r, err := hpke.NewRecipient(v.Enc, hk, kdf, aead, v.Info)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range v.Encryptions {
			if got, err := r.Open(e.AAD, e.CT); err != nil || !bytes.Equal(got, e.PT) {
				t.Errorf("encryption %d: crypto/hpke opens %x, %v; want %x", i, got, err, e.PT)
			}
		}
		for i, e := range v.Exports {
			if got, err := r.Export(string(e.Context), e.L); err != nil || !bytes.Equal(got, e.Value) {
				t.Errorf("export %d: %x, %v; want %s", i, got, err, hex.EncodeToString(e.Value))
			}
		}
	})
}
