package roles

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/board"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// TestStoredReceiptIsTheOneSent checks that the board stores the receipt it
// sends: the student's receipt, encoded, is byte for byte the body the
// submission's row holds. The board's ECDSA signatures are randomised, so a
// board that signed again to send, or stored a receipt of its own making
// after the fact, would fail here.
func TestStoredReceiptIsTheOneSent(t *testing.T) {
	p := newStepPKI(t)
	dir := t.TempDir()
	for range 3 {
		r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{boardDir: dir})
		if r.err != nil {
			t.Fatal(r.err)
		}
		sent, err := wire.Marshal(r.sub.receipt)
		if err != nil {
			t.Fatal(err)
		}
		st, err := board.OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := st.Get(r.sub.receipt.ID)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Receipt, sent[1:]) {
			t.Errorf("receipt %s: stored\n%x\nthe student received\n%x", rec.ID, rec.Receipt, sent[1:])
		}
		if !bytes.Equal(rec.BoardCertificate, p.board.Raw) {
			t.Errorf("receipt %s: the stored board certificate is not the session's", rec.ID)
		}
	}
}

// TestReadAsOwner checks that the operator commands refuse to read a
// database another user owns (run as root on the board's files, they would
// leave root's -wal and -shm files behind, which stop the board), and say
// how to run them instead. It needs root, to give the file away.
func TestReadAsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the database to another user")
	}
	p := newStepPKI(t)
	dir := t.TempDir()
	if r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{boardDir: dir}); r.err != nil {
		t.Fatal(r.err)
	}
	db := filepath.Join(dir, board.DBFile)
	const nobody = 65534
	if err := os.Chown(db, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Board.DataDir = dir
	err := ListSubmissions(t.Context(), cfg, true, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "run the command as the daemon's user, e.g. sudo -u ") {
		t.Fatalf("submissions as root on another user's database: got %v", err)
	}
	for _, f := range []string{db + "-wal", db + "-shm"} {
		if fi, err := os.Stat(f); err == nil && ownedByRoot(fi) {
			t.Errorf("%s was left owned by root", f)
		}
	}
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, keys.EncodeCertificatePEM(p.root.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	err = VerifySubmission(t.Context(), cfg, VerifySubmissionOptions{ID: "000001", Root: rootFile}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "sudo -u ") {
		t.Errorf("submissions --verify as root on another user's database: got %v", err)
	}
}

// ownedByRoot reports whether fi's file belongs to root.
func ownedByRoot(fi os.FileInfo) bool {
	uid, _, ok := fileOwner(fi)
	return ok && uid == 0
}
