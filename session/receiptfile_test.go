package session

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// The receipt fixtures: a root, and receipt files signed by a board
// certificate it issued. -update (with -run TestReceiptFileCorpus) makes a new
// root and rewrites them all.
var (
	receiptRootFile   = filepath.Join("testdata", "receipt-root.pem")
	receiptCorpusDir  = filepath.Join("testdata", "fuzz", "FuzzReceiptFile")
	receiptValidSeed  = "valid"
	receiptReceivedAt = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
)

// receiptSeeds makes a root, a board certificate, and receipt files: one
// valid, the others each broken in one way, and one whose board chain is 50
// certificates deep.
func receiptSeeds(tb testing.TB) (root *x509.Certificate, seeds map[string][]byte) {
	tb.Helper()
	rootKey := testcert.Key(tb)
	root = testcert.Issue(tb, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Receipt Fixture Root"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	boardKey := testcert.Key(tb)
	boardTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "blackboard"}, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
	}
	boardCert := testcert.Issue(tb, boardTmpl(), root, boardKey.Public(), rootKey)

	content := sha256.Sum256([]byte("This is submission from 1155000001.\n"))
	r := &wire.Receipt{
		ID: "000042", SID: "1155000001", Serial: []byte{0x7f, 1, 2}, Name: "message.txt",
		Size: 360, SHA256: content, Received: uint64(receiptReceivedAt.UnixMilli()),
	}
	sign := func(r *wire.Receipt, key crypto.Signer) {
		msg, err := ReceiptSignedBytes(r)
		if err != nil {
			tb.Fatal(err)
		}
		if r.Signature, err = keys.Sign(key, rand.Reader, msg); err != nil {
			tb.Fatal(err)
		}
	}
	sign(r, boardKey)
	file := func(r *wire.Receipt, chain ...*x509.Certificate) receiptFile {
		data, err := MarshalReceiptFile(r, chain)
		if err != nil {
			tb.Fatal(err)
		}
		var f receiptFile
		if err := json.Unmarshal(data, &f); err != nil {
			tb.Fatal(err)
		}
		return f
	}
	encode := func(f receiptFile) []byte {
		data, err := json.MarshalIndent(&f, "", "  ")
		if err != nil {
			tb.Fatal(err)
		}
		return append(data, '\n')
	}
	valid := file(r, boardCert)
	seeds = map[string][]byte{receiptValidSeed: encode(valid)}
	variant := func(name string, change func(f *receiptFile)) {
		f := valid
		f.BoardCertificates = append([][]byte(nil), valid.BoardCertificates...)
		change(&f)
		seeds[name] = encode(f)
	}
	variant("version-2", func(f *receiptFile) { f.Version = 2 })
	variant("sha256-short", func(f *receiptFile) { f.SHA256 = f.SHA256[:62] })
	variant("sha256-not-hex", func(f *receiptFile) { f.SHA256 = strings.Repeat("zz", 32) })
	variant("signature-flipped", func(f *receiptFile) { f.Signature = "00" + f.Signature[2:] })
	variant("size-changed", func(f *receiptFile) { f.Size++ })
	variant("id-too-long", func(f *receiptFile) { f.ID = strings.Repeat("9", 300) })
	variant("dated-year-1", func(f *receiptFile) { f.Received = "0001-01-01T00:00:00.000Z" })
	variant("dated-future", func(f *receiptFile) { f.Received = "2999-01-01T00:00:00.000Z" })
	variant("no-board-cert", func(f *receiptFile) { f.BoardCertificates = nil })
	variant("board-cert-garbage", func(f *receiptFile) { f.BoardCertificates = [][]byte{[]byte("garbage")} })
	variant("root-as-board", func(f *receiptFile) { f.BoardCertificates = [][]byte{root.Raw} })

	// A board chain 50 deep: 49 intermediate CAs between the root and a board
	// certificate. Verification must stay bounded (and fail: the root allows no
	// intermediates).
	parent, parentKey := root, crypto.Signer(rootKey)
	var deep []*x509.Certificate
	for i := range 49 {
		k := testcert.Key(tb)
		c := testcert.Issue(tb, &x509.Certificate{
			Subject: pkix.Name{CommonName: fmt.Sprintf("Intermediate %02d", i)}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign,
		}, parent, k.Public(), parentKey)
		deep = append([]*x509.Certificate{c}, deep...)
		parent, parentKey = c, k
	}
	deepKey := testcert.Key(tb)
	deepBoard := testcert.Issue(tb, boardTmpl(), parent, deepKey.Public(), parentKey)
	deepReceipt := *r
	sign(&deepReceipt, deepKey)
	seeds["chain-50-deep"] = encode(file(&deepReceipt, append([]*x509.Certificate{deepBoard}, deep...)...))

	seeds["empty"] = []byte{}
	seeds["not-json"] = []byte("receipt 000042 for 1155000001")
	seeds["json-null"] = []byte("null")
	seeds["json-array"] = []byte("[1,2,3]")
	seeds["empty-object"] = []byte("{}")
	return root, seeds
}

// loadReceiptRoot returns the committed fixture root.
func loadReceiptRoot(tb testing.TB) *x509.CertPool {
	tb.Helper()
	root, err := keys.ReadCertificate(receiptRootFile)
	if err != nil {
		tb.Fatalf("%v (run go test ./session -run TestReceiptFileCorpus -update)", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return pool
}

// TestReceiptFileCorpus checks the committed receipt fixtures (or, with
// -update, makes new ones): the valid seed verifies against the committed
// root, and every broken one does not.
func TestReceiptFileCorpus(t *testing.T) {
	if *update {
		root, seeds := receiptSeeds(t)
		if err := os.MkdirAll(receiptCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(receiptRootFile, keys.EncodeCertificatePEM(root.Raw), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := fuzzseed.Write("FuzzReceiptFile", fuzzseed.Bytes(seeds)); err != nil {
			t.Fatal(err)
		}
	}
	pool := loadReceiptRoot(t)
	entries, err := os.ReadDir(receiptCorpusDir)
	if err != nil {
		t.Fatal(err)
	}
	sawValid := false
	for _, e := range entries {
		sawValid = sawValid || e.Name() == receiptValidSeed
		data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, e.Name()))
		err := verifyReceiptBytes(data, pool)
		if (err == nil) != (e.Name() == receiptValidSeed) {
			t.Errorf("seed %s: verification gave %v", e.Name(), err)
		}
	}
	if !sawValid || len(entries) < 2 {
		t.Errorf("%s: %d seeds, valid seed %q present: %v; want it and broken ones (run go test ./session -run TestReceiptFileCorpus -update)",
			receiptCorpusDir, len(entries), receiptValidSeed, sawValid)
	}
}

// readCorpusBytes decodes a one-[]byte seed file of the go fuzz corpus format.
func readCorpusBytes(tb testing.TB, path string) []byte {
	tb.Helper()
	values, err := fuzzseed.Read(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(values) != 1 {
		tb.Fatalf("%s is not a []byte seed", path)
	}
	b, ok := values[0].([]byte)
	if !ok {
		tb.Fatalf("%s is not a []byte seed", path)
	}
	return b
}

// verifyReceiptBytes is what `pkiboard verify-receipt` does with a receipt
// file, minus the file system: parse it and check it against the roots.
func verifyReceiptBytes(data []byte, roots *x509.CertPool) error {
	r, chain, err := ParseReceiptFile(data)
	if err != nil {
		return err
	}
	return VerifyReceipt(r, chain, roots, time.Now())
}

// TestReceiptFileFormat checks that the committed valid receipt file is
// exactly what MarshalReceiptFile writes for the receipt it holds: the file
// format (PROTOCOL.md §5.4) has not changed under the files students keep.
func TestReceiptFileFormat(t *testing.T) {
	data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, receiptValidSeed))
	r, chain, err := ParseReceiptFile(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalReceiptFile(r, chain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("MarshalReceiptFile wrote\n%s\nwant the committed\n%s", got, data)
	}
	for _, want := range []string{`"version": 1,`, `"id": "000042",`, `"serial": "7f0102",`, `"received": "2026-06-01T12:00:00.000Z",`, `"board_certificates": [`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the receipt file lacks %s", want)
		}
	}
}

// TestReceiptParseErrorsSayWhat is the regression test of a finding of
// FuzzReceiptFile: a receipt whose sha256 field was valid hex of the wrong
// length was refused with "receipt fields: <nil>".
func TestReceiptParseErrorsSayWhat(t *testing.T) {
	pool := loadReceiptRoot(t)
	for _, name := range []string{"sha256-short", "sha256-not-hex", "version-2", "dated-year-1", "no-board-cert", "board-cert-garbage", "empty-object"} {
		err := verifyReceiptBytes(readCorpusBytes(t, filepath.Join(receiptCorpusDir, name)), pool)
		if err == nil || strings.Contains(err.Error(), "<nil>") {
			t.Errorf("%s: got %v, want an error that says what is wrong", name, err)
		}
	}
}

// TestDeepReceiptChainIsBounded checks that a receipt whose board chain is 50
// certificates deep is refused for its length, before a certificate is parsed
// or a chain built.
func TestDeepReceiptChainIsBounded(t *testing.T) {
	pool := loadReceiptRoot(t)
	data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, "chain-50-deep"))
	err := verifyReceiptBytes(data, pool)
	if err == nil || !strings.Contains(err.Error(), "holds 50 board certificates") {
		t.Fatalf("got %v, want a refusal of the 50 certificates", err)
	}
}

// FuzzReceiptFile feeds arbitrary bytes to what `pkiboard verify-receipt`
// runs: the receipt file parser and VerifyReceipt against the
// fixture root. Errors must say what is wrong; a receipt that verifies must
// carry exactly the fields the fixture board signed (its signature cannot be
// moved to other fields).
func FuzzReceiptFile(f *testing.F) {
	pool := loadReceiptRoot(f)
	valid, _, err := ParseReceiptFile(readCorpusBytes(f, filepath.Join(receiptCorpusDir, receiptValidSeed)))
	if err != nil {
		f.Fatal(err)
	}
	signed, err := ReceiptSignedBytes(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, chain, err := ParseReceiptFile(data)
		if err != nil {
			if strings.Contains(err.Error(), "<nil>") {
				t.Fatalf("error does not say what is wrong: %v", err)
			}
			return
		}
		if r == nil || len(chain) == 0 {
			t.Fatal("parsed a receipt without a board certificate")
		}
		if err := VerifyReceipt(r, chain, pool, time.Now()); err != nil {
			return
		}
		got, err := ReceiptSignedBytes(r)
		if err != nil {
			t.Fatalf("a verified receipt does not encode: %v", err)
		}
		if !bytes.Equal(got, signed) {
			t.Fatalf("a receipt with other fields verified: %+v", r)
		}
	})
}
