package board

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// The fixed root and board certificate of FuzzStatusUpdate, in
// testdata/watch: the seeds are signed by that root, so that the fuzzer starts
// from pushes the board accepts. Test material only.
var watchFixtures = filepath.Join("testdata", "watch")

// watchFixturesWritten is set once -update has made the fixtures in this run.
var watchFixturesWritten bool

// fixedWatchPKI loads the fixtures, or with -update makes them anew.
func fixedWatchPKI(t testing.TB) (root *x509.Certificate, rootKey crypto.Signer, board *x509.Certificate) {
	t.Helper()
	rootPath, keyPath, boardPath := filepath.Join(watchFixtures, "root.pem"), filepath.Join(watchFixtures, "root-key.pem"), filepath.Join(watchFixtures, "board.pem")
	if *update && !watchFixturesWritten {
		watchFixturesWritten = true
		k := testcert.Key(t)
		r := testcert.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "FuzzStatusUpdate Test Root"}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, NotAfter: time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC),
		}, nil, k.Public(), k)
		bk := testcert.Key(t)
		b := testcert.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "blackboard"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			NotAfter: time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC),
		}, r, bk.Public(), k)
		if err := os.MkdirAll(watchFixtures, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := keys.WritePrivateKey(keyPath, k, nil); err != nil {
			t.Fatal(err)
		}
		for path, der := range map[string][]byte{rootPath: r.Raw, boardPath: b.Raw} {
			if err := os.WriteFile(path, keys.EncodeCertificatePEM(der), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var err error
	if root, err = keys.ReadCertificate(rootPath); err != nil {
		t.Fatal(err)
	}
	if rootKey, err = keys.ReadPrivateKey(keyPath, nil); err != nil {
		t.Fatal(err)
	}
	if board, err = keys.ReadCertificate(boardPath); err != nil {
		t.Fatal(err)
	}
	return root, rootKey, board
}

// statusUpdateSeeds returns the seeds of FuzzStatusUpdate: pushes the board
// accepts, and broken ones.
func statusUpdateSeeds(t *testing.T) map[string][]any {
	root, rootKey, board := fixedWatchPKI(t)
	p := &watchPKI{crlPKI: &crlPKI{root: root, rootKey: rootKey}, board: board}
	other := newWatchPKI(t)
	this := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	crl2 := p.crlDER(t, 2)
	good := p.status(t, board, 2, this, false, nil)
	return map[string][]any{
		"valid":             {crl2, good},
		"valid-revoked":     {p.crlDER(t, 3, board.SerialNumber), p.status(t, board, 3, this, true, nil)},
		"status-other-root": {crl2, p.status(t, board, 2, this, false, other.rootKey)},
		"status-other-cert": {crl2, p.status(t, other.board, 2, this, false, nil)},
		"status-truncated":  {crl2, good[:len(good)-1]},
		"status-trailing":   {crl2, append(append([]byte(nil), good...), 0)},
		"crl-other-root":    {other.crlDER(t, 2), good},
		"crl-truncated":     {crl2[:len(crl2)/2], good},
		"empty":             {[]byte{}, []byte{}},
	}
}

// TestStatusUpdateCorpus checks that testdata/fuzz/FuzzStatusUpdate holds
// every seed; -update writes it (and the fixtures).
func TestStatusUpdateCorpus(t *testing.T) {
	seeds := statusUpdateSeeds(t)
	if *update {
		if err := fuzzseed.Write("FuzzStatusUpdate", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzStatusUpdate", seeds, false, "run go test ./board -run TestStatusUpdateCorpus -update")
	// The valid seed on disk is accepted: the fixtures and the corpus agree.
	values, err := fuzzseed.Read(filepath.Join(fuzzseed.Dir("FuzzStatusUpdate"), "valid"))
	if err != nil {
		t.Fatal(err)
	}
	root, _, board := fixedWatchPKI(t)
	w := NewWatcher(WatchOptions{Root: root, CRLs: NewCRLKeeper(CRLOptions{Path: filepath.Join(t.TempDir(), "crl.pem"), Root: root})})
	if _, err := w.apply(&wire.StatusUpdate{CRL: values[0].([]byte), Status: values[1].([]byte)}, board); err != nil {
		t.Errorf("the committed valid seed is refused: %v", err)
	}
}

// FuzzStatusUpdate feeds arbitrary CRL and status bytes, as a StatusUpdate
// carries them from the CA, to the board's handling of a push: it must never
// panic, and must accept only a CRL signed by the root and a status signed by
// the root for the board's own certificate.
func FuzzStatusUpdate(f *testing.F) {
	root, _, board := fixedWatchPKI(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, crl, status []byte) {
		k := NewCRLKeeper(CRLOptions{Path: filepath.Join(dir, "crl.pem"), Root: root})
		var now time.Time
		w := NewWatcher(WatchOptions{Root: root, CRLs: k, Now: func() time.Time { return now },
			Identity: func() (*x509.Certificate, crypto.Signer) { return board, nil }})
		held, err := w.apply(&wire.StatusUpdate{CRL: crl, Status: status}, board)
		if err != nil {
			if w.status != nil {
				t.Fatal("a refused push left a status held")
			}
			return
		}
		parsed, perr := ca.ParseCRL(crl, root)
		if perr != nil {
			t.Fatalf("a CRL that fails ca.ParseCRL was accepted: %v", perr)
		}
		if k.Number() == nil || held != k.Number().Uint64() || parsed.Number.Uint64() != held {
			t.Fatalf("acknowledged %d; the keeper holds %v, the CRL is %v", held, k.Number(), parsed.Number)
		}
		st, serr := checkStatus(status, root, board)
		if serr != nil {
			t.Fatalf("a status that fails its checks was accepted: %v", serr)
		}
		now = time.Unix(int64(st.ThisUpdate), 0)
		if string(w.Status()) != string(status) {
			t.Fatal("the accepted status is not the one Status returns")
		}
	})
}
