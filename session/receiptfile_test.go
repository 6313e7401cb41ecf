package session

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
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
	receiptRootFile    = filepath.Join("testdata", "receipt-root.pem")
	receiptCorpusDir   = filepath.Join("testdata", "fuzz", "FuzzReceiptFile")
	receiptValidSeed   = "valid"
	receiptValidV2Seed = "valid-v2"
	receiptReceivedAt  = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
)

// receiptSeeds makes a root, a board certificate, and receipt files: one
// valid, the others each broken in one way, among them the forged evidence
// of finding 5 (a self-made root and "blackboard" certificate).
func receiptSeeds(tb testing.TB) (root *x509.Certificate, seeds map[string][]byte) {
	tb.Helper()
	rootKey := testcert.Key(tb)
	rootTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "Receipt Fixture Root"}, IsCA: true, BasicConstraintsValid: true,
			MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
	}
	root = testcert.Issue(tb, rootTmpl(), nil, rootKey.Public(), rootKey)
	boardKey := testcert.Key(tb)
	boardTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "blackboard"}, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
	}
	boardCert := testcert.Issue(tb, boardTmpl(), root, boardKey.Public(), rootKey)

	content := sha256.Sum256([]byte("This is submission from 1155000001.\n"))
	receipt := func(board *x509.Certificate, key crypto.Signer) *wire.Receipt {
		r := &wire.Receipt{
			ID: "000042", SID: "1155000001", Serial: []byte{0x7f, 1, 2}, Assignment: "hw1", Original: "message.txt",
			Name: "message.txt", Size: 360, SHA256: content, Received: uint64(receiptReceivedAt.UnixMilli()),
			Due: uint64(receiptReceivedAt.Add(-3 * time.Minute).UnixMilli()), Late: 180000, Version: 2,
			BoardCertSHA256: sha256.Sum256(board.Raw),
		}
		msg, err := ReceiptSignedBytes(r)
		if err != nil {
			tb.Fatal(err)
		}
		if r.Signature, err = keys.Sign(key, rand.Reader, msg); err != nil {
			tb.Fatal(err)
		}
		return r
	}
	file := func(r *wire.Receipt, board *x509.Certificate) receiptFile {
		data, err := MarshalReceiptFile(r, board)
		if err != nil {
			tb.Fatal(err)
		}
		var f receiptFile
		if err := json.Unmarshal(data, &f); err != nil {
			tb.Fatal(err)
		}
		return f
	}
	encode := func(f any) []byte {
		data, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			tb.Fatal(err)
		}
		return append(data, '\n')
	}
	valid := file(receipt(boardCert, boardKey), boardCert)
	seeds = map[string][]byte{receiptValidSeed: encode(&valid)}
	variant := func(name string, change func(f *receiptFile)) {
		f := valid
		f.BoardCertificates = append([][]byte(nil), valid.BoardCertificates...)
		change(&f)
		seeds[name] = encode(&f)
	}
	variant("version-1", func(f *receiptFile) { f.Version = 1 })
	// A receipt edited to say "on time", with late 0 or the due time moved,
	// and a statement replayed into another assignment: none verifies.
	variant("late-zeroed", func(f *receiptFile) { f.Late = 0 })
	variant("due-moved", func(f *receiptFile) { due := f.Received; f.Due, f.Late = &due, 0 })
	variant("due-removed", func(f *receiptFile) { f.Due, f.Late = nil, 0 })
	variant("other-assignment", func(f *receiptFile) { f.Assignment = "hw2" })
	variant("other-version", func(f *receiptFile) { f.SubmissionVersion = 1 })
	variant("sha256-short", func(f *receiptFile) { f.SHA256 = f.SHA256[:62] })
	variant("sha256-not-hex", func(f *receiptFile) { f.SHA256 = strings.Repeat("zz", 32) })
	variant("sha256-uppercase", func(f *receiptFile) { f.SHA256 = strings.ToUpper(f.SHA256) })
	variant("signature-flipped", func(f *receiptFile) { f.Signature = "00" + f.Signature[2:] })
	variant("size-changed", func(f *receiptFile) { f.Size++ })
	variant("id-too-long", func(f *receiptFile) { f.ID = strings.Repeat("9", 300) })
	variant("dated-year-1", func(f *receiptFile) { f.Received = "0001-01-01T00:00:00.000Z" })
	variant("dated-future", func(f *receiptFile) { f.Received = "2999-01-01T00:00:00.000Z" })
	variant("received-no-millis", func(f *receiptFile) { f.Received = "2026-06-01T12:00:00Z" })
	variant("received-offset", func(f *receiptFile) { f.Received = "2026-06-01T20:00:00.000+08:00" })
	variant("no-board-cert", func(f *receiptFile) { f.BoardCertificates = nil })
	variant("two-board-certs", func(f *receiptFile) { f.BoardCertificates = append(f.BoardCertificates, root.Raw) })
	variant("board-cert-garbage", func(f *receiptFile) { f.BoardCertificates = [][]byte{[]byte("garbage")} })
	variant("root-as-board", func(f *receiptFile) { f.BoardCertificates = [][]byte{root.Raw} })

	// Another board certificate of the same root: the receipt names the
	// board certificate that signed it, so another's cannot stand in.
	otherKey := testcert.Key(tb)
	other := testcert.Issue(tb, boardTmpl(), root, otherKey.Public(), rootKey)
	variant("other-board-cert", func(f *receiptFile) { f.BoardCertificates = [][]byte{other.Raw} })

	// Finding 5: a self-made root, a self-made "blackboard" certificate and a
	// receipt dated three days back, all consistent with one another.
	forgedRootKey := testcert.Key(tb)
	forgedRoot := testcert.Issue(tb, rootTmpl(), nil, forgedRootKey.Public(), forgedRootKey)
	forgedKey := testcert.Key(tb)
	forgedBoard := testcert.Issue(tb, boardTmpl(), forgedRoot, forgedKey.Public(), forgedRootKey)
	forged := receipt(forgedBoard, forgedKey)
	forged.Received = uint64(receiptReceivedAt.Add(-72 * time.Hour).UnixMilli())
	if msg, err := ReceiptSignedBytes(forged); err == nil {
		forged.Signature, _ = keys.Sign(forgedKey, rand.Reader, msg)
	}
	forgedFile := file(forged, forgedBoard)
	seeds["forged-root"] = encode(&forgedFile)

	// The keys of the file, one too many and one too few.
	var m map[string]any
	if err := json.Unmarshal(seeds[receiptValidSeed], &m); err != nil {
		tb.Fatal(err)
	}
	m["board_chain"] = []string{}
	seeds["extra-key"] = encode(m)
	delete(m, "board_chain")
	delete(m, "name")
	seeds["missing-key"] = encode(m)
	m["name"] = valid.Name
	m["size"] = fmt.Sprint(valid.Size)
	seeds["size-as-string"] = encode(m)

	// A receipt of version 2, kept from before version 3: it verifies, in
	// its own layout.
	v2 := &wire.ReceiptV2{ID: "000041", SID: "1155000001", Serial: []byte{0x7f, 1, 2}, Name: "message.txt",
		Size: 360, SHA256: content, Received: uint64(receiptReceivedAt.Add(-time.Hour).UnixMilli()),
		BoardCertSHA256: sha256.Sum256(boardCert.Raw)}
	msg, err := ReceiptV2SignedBytes(v2)
	if err != nil {
		tb.Fatal(err)
	}
	if v2.Signature, err = keys.Sign(boardKey, rand.Reader, msg); err != nil {
		tb.Fatal(err)
	}
	if seeds[receiptValidV2Seed], err = MarshalReceiptFileV2(v2, boardCert); err != nil {
		tb.Fatal(err)
	}
	// The v2 file relabelled as version 3, and the v3 one as version 2.
	seeds["v2-as-v3"] = bytes.Replace(seeds[receiptValidV2Seed], []byte(`"version": 2`), []byte(`"version": 3`), 1)
	seeds["v3-as-v2"] = bytes.Replace(seeds[receiptValidSeed], []byte(`"version": 3`), []byte(`"version": 2`), 1)

	seeds["empty"] = []byte{}
	seeds["not-json"] = []byte("receipt 000042 for 1155000001")
	seeds["json-null"] = []byte("null")
	seeds["json-array"] = []byte("[1,2,3]")
	seeds["empty-object"] = []byte("{}")
	return root, seeds
}

// loadReceiptRoot returns the committed fixture root.
func loadReceiptRoot(tb testing.TB) *x509.Certificate {
	tb.Helper()
	root, err := keys.ReadCertificate(receiptRootFile)
	if err != nil {
		tb.Fatalf("%v (run go test ./session -run TestReceiptFileCorpus -update)", err)
	}
	return root
}

// TestReceiptFileCorpus checks the committed receipt fixtures (or, with
// -update, makes new ones): the valid seed verifies against the committed
// root, and every broken one does not.
func TestReceiptFileCorpus(t *testing.T) {
	if *update {
		root, seeds := receiptSeeds(t)
		if err := os.RemoveAll(receiptCorpusDir); err != nil { // the seeds of version 1 go
			t.Fatal(err)
		}
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
	root := loadReceiptRoot(t)
	entries, err := os.ReadDir(receiptCorpusDir)
	if err != nil {
		t.Fatal(err)
	}
	sawValid := false
	for _, e := range entries {
		sawValid = sawValid || e.Name() == receiptValidSeed
		data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, e.Name()))
		err := verifyReceiptBytes(data, root)
		if (err == nil) != (e.Name() == receiptValidSeed || e.Name() == receiptValidV2Seed) {
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
func verifyReceiptBytes(data []byte, root *x509.Certificate) error {
	rf, err := ParseReceiptFile(data)
	if err != nil {
		return err
	}
	return rf.Verify(root, time.Now())
}

// TestReceiptFileFormat checks that the committed valid receipt file is
// exactly what MarshalReceiptFile writes for the receipt it holds: the file
// format (PROTOCOL.md §5.5) has not changed under the files students keep,
// and that it has exactly the keys and JSON types of the document.
func TestReceiptFileFormat(t *testing.T) {
	data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, receiptValidSeed))
	rf, err := ParseReceiptFile(data)
	if err != nil {
		t.Fatal(err)
	}
	board := rf.Board
	got, err := MarshalReceiptFile(rf.Receipt, board)
	if err != nil {
		t.Fatal(err)
	}
	v2data := readCorpusBytes(t, filepath.Join(receiptCorpusDir, receiptValidV2Seed))
	if v2, err := ParseReceiptFile(v2data); err != nil || v2.Version != 2 {
		t.Errorf("the receipt file of version 2: %v", err)
	} else if again, err := MarshalReceiptFileV2(v2.V2, v2.Board); err != nil || !bytes.Equal(again, v2data) {
		t.Errorf("MarshalReceiptFileV2 wrote\n%s\nwant the committed\n%s (%v)", again, v2data, err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("MarshalReceiptFile wrote\n%s\nwant the committed\n%s", got, data)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	types := map[string]string{"version": "number", "id": "string", "sid": "string", "serial": "string", "name": "string",
		"size": "number", "sha256": "string", "received": "string", "signature": "string", "board_certificates": "array",
		"assignment": "string", "original": "string", "due": "string", "late": "number", "submission_version": "number"}
	for k, v := range m {
		var kind string
		switch v.(type) {
		case float64:
			kind = "number"
		case string:
			kind = "string"
		case []any:
			kind = "array"
		}
		if types[k] != kind {
			t.Errorf("key %q holds a %s, want a %s", k, kind, types[k])
		}
	}
	if len(m) != len(types) {
		t.Errorf("the file has %d keys, want %d", len(m), len(types))
	}
	certs, _ := m["board_certificates"].([]any)
	if len(certs) != 1 || certs[0] != base64.StdEncoding.EncodeToString(board.Raw) {
		t.Errorf("board_certificates = %v, want one entry, the certificate in standard base64", m["board_certificates"])
	}
	for _, want := range []string{`"version": 3,`, `"due": "2026-06-01T11:57:00.000Z",`, `"late": 180000,`, `"id": "000042",`, `"serial": "7f0102",`, `"received": "2026-06-01T12:00:00.000Z",`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the receipt file lacks %s", want)
		}
	}
}

// TestReceiptParseErrorsSayWhat is the regression test of a finding of
// FuzzReceiptFile: a receipt whose sha256 field was valid hex of the wrong
// length was refused with "receipt fields: <nil>". Each broken seed is
// refused with a sentence that names what is wrong.
func TestReceiptParseErrorsSayWhat(t *testing.T) {
	root := loadReceiptRoot(t)
	for name, want := range map[string]string{
		"sha256-short":       "sha256 holds 31 bytes",
		"sha256-not-hex":     "sha256",
		"sha256-uppercase":   "not lowercase hex",
		"version-1":          "version 1 is not 3 or 2",
		"late-zeroed":        "signature",
		"due-moved":          "signature",
		"due-removed":        "signature",
		"other-assignment":   "signature",
		"other-version":      "signature",
		"v2-as-v3":           "its keys are",
		"v3-as-v2":           "its keys are",
		"dated-year-1":       "before 1970",
		"dated-future":       "after now",
		"received-no-millis": "three fractional digits",
		"received-offset":    "three fractional digits",
		"no-board-cert":      "holds 0 board certificates",
		"two-board-certs":    "holds 2 board certificates",
		"board-cert-garbage": "board certificate in the receipt",
		"root-as-board":      "the receipt's board certificate",
		"other-board-cert":   "signature",
		"forged-root":        "not signed by the root",
		"extra-key":          "board_chain",
		"missing-key":        "its keys are",
		"size-as-string":     "size",
		"empty-object":       "version 0 is not 3 or 2",
		"json-null":          "not a JSON object",
	} {
		err := verifyReceiptBytes(readCorpusBytes(t, filepath.Join(receiptCorpusDir, name)), root)
		if err == nil || strings.Contains(err.Error(), "<nil>") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error that says %q", name, err, want)
		}
	}
}

// FuzzReceiptFile feeds arbitrary bytes to what `pkiboard verify-receipt`
// runs: the receipt file parser and VerifyReceipt against the
// fixture root. Errors must say what is wrong; a receipt that verifies must
// carry exactly the fields the fixture board signed (its signature cannot be
// moved to other fields).
func FuzzReceiptFile(f *testing.F) {
	root := loadReceiptRoot(f)
	valid, err := ParseReceiptFile(readCorpusBytes(f, filepath.Join(receiptCorpusDir, receiptValidSeed)))
	if err != nil {
		f.Fatal(err)
	}
	signed, err := ReceiptSignedBytes(valid.Receipt)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := ParseReceiptFile(data)
		if err != nil {
			if strings.Contains(err.Error(), "<nil>") {
				t.Fatalf("error does not say what is wrong: %v", err)
			}
			return
		}
		if rf.Board == nil || rf.Fields().BoardCertSHA256 != sha256.Sum256(rf.Board.Raw) {
			t.Fatal("parsed a receipt without its board certificate")
		}
		if err := rf.Verify(root, time.Now()); err != nil || rf.Version == 2 {
			return
		}
		r := rf.Receipt
		got, err := ReceiptSignedBytes(r)
		if err != nil {
			t.Fatalf("a verified receipt does not encode: %v", err)
		}
		if !bytes.Equal(got, signed) {
			t.Fatalf("a receipt with other fields verified: %+v", r)
		}
	})
}
