package roles

import (
	"archive/tar"
	"bytes"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
	"pkiboard/session"
)

// archived is one entry of an archive.
type archived struct {
	hdr  *tar.Header
	data []byte
}

// readArchive reads a tar file whole, in order.
func readArchive(t *testing.T, path string) ([]string, map[string]archived) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	out := map[string]archived{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out[h.Name] = archived{hdr: h, data: data}
	}
}

// extract writes an archive's entries into dir, as tar -xf would.
func extract(t *testing.T, entries map[string]archived, dir string) {
	t.Helper()
	for name, e := range entries {
		path := filepath.Join(dir, name)
		if e.hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, e.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupBoard checks a board's archive: written 0600, never over an
// existing file, holding a copy of board.db and the content file of each of
// its rows, the board's certificates, CRL and status, and its key only when
// asked (and then said on the warning writer); restored, each submission
// verifies. A content file altered after it was stored stops the backup.
func TestBackupBoard(t *testing.T) {
	p := newStepPKI(t)
	dir := t.TempDir()
	var ids []string
	for range 3 {
		r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{boardDir: dir})
		if r.err != nil {
			t.Fatal(r.err)
		}
		ids = append(ids, r.sub.receipt.ID)
	}
	keyPEM, err := keys.MarshalPrivatePEM(p.boardK, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		ca.RootFile: keys.EncodeCertificatePEM(p.root.Raw), ca.CertFile: keys.EncodeCertificatePEM(p.board.Raw),
		ca.KeyFile: keyPEM, "crl.pem": []byte("a CRL"), board.StatusFile: []byte("a status"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The board holds the lock while the backup reads.
	live, err := board.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	cfg := config.Default()
	cfg.Board.DataDir = dir
	out := filepath.Join(t.TempDir(), "board.tar")

	for _, withKey := range []bool{false, true} {
		os.Remove(out)
		var warn bytes.Buffer
		res, err := Backup(t.Context(), cfg, BackupOptions{Role: "board", Out: out, IncludeKey: withKey}, &warn)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != res.Size {
			t.Fatalf("the archive: %v, mode %v, size %d (said %d)", err, fi.Mode(), fi.Size(), res.Size)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*")); len(left) != 0 {
			t.Errorf("temporary files left beside the archive: %q", left)
		}
		names, entries := readArchive(t, out)
		want := []string{board.DBFile, board.ContentDir + "/", board.ContentDir + "/000001.dat", board.ContentDir + "/000002.dat", board.ContentDir + "/000003.dat",
			ca.RootFile, ca.CertFile, "crl.pem", board.StatusFile}
		if withKey {
			want = append(want, ca.KeyFile)
		}
		if !slices.Equal(names, want) {
			t.Errorf("with key %v: the archive holds %q, want %q", withKey, names, want)
		}
		for name, e := range entries {
			wantMode := int64(0o600)
			if e.hdr.Typeflag == tar.TypeDir {
				wantMode = 0o700
			}
			if e.hdr.Mode != wantMode || e.hdr.Uid != os.Getuid() {
				t.Errorf("%s: mode %o, uid %d", name, e.hdr.Mode, e.hdr.Uid)
			}
		}
		if said := strings.Contains(warn.String(), "PRIVATE KEY"); said != withKey {
			t.Errorf("with key %v: warned %q", withKey, warn.String())
		}
		wantTables := []sqlstore.TableRows{{Table: "active"}, {Table: "audit"}, {Table: "extensions"}, {Table: "submissions", Rows: 3}}
		if got := res.Tables; !slices.Equal(got, wantTables) || res.Version != 5 {
			t.Errorf("the copy's rows: version %d, %v", res.Version, got)
		}
		var printed bytes.Buffer
		PrintBackup(&printed, "board", res)
		for _, s := range []string{"submissions: 3 rows", "3 files, one per row", "not included: partial/"} {
			if !strings.Contains(printed.String(), s) {
				t.Errorf("the summary lacks %q:\n%s", s, printed.String())
			}
		}

		// Restored, the store lists and verifies every submission.
		restored := filepath.Join(t.TempDir(), "restored")
		extract(t, entries, restored)
		st, err := board.Open(restored)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := st.List()
		if err != nil || len(recs) != len(ids) {
			t.Fatalf("restored: %d submissions, %v", len(recs), err)
		}
		for i := range recs {
			if ev := st.Verify(&recs[i], p.root, nil); ev.Problem != "" || !ev.ContentOK || !ev.ReceiptOK {
				t.Errorf("restored %s: %+v", recs[i].ID, ev)
			}
		}
		st.Close()
	}

	// An existing archive is not overwritten.
	before, _ := os.ReadFile(out)
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "board", Out: out}, io.Discard); err == nil || !strings.Contains(err.Error(), "not overwritten") {
		t.Errorf("a backup over an existing archive: %v", err)
	}
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Error("the existing archive was changed")
	}

	// A certificate for another key than key.pem: a renewal half done, read
	// again, then given up.
	other := newStepPKI(t)
	if err := os.WriteFile(filepath.Join(dir, ca.CertFile), keys.EncodeCertificatePEM(other.board.Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "board", Out: filepath.Join(t.TempDir(), "k.tar"), IncludeKey: true}, io.Discard); err == nil || !strings.Contains(err.Error(), "is for neither") {
		t.Errorf("a backup with a certificate for another key: %v", err)
	}

	// A content file altered after it was stored: no archive.
	content := filepath.Join(dir, board.ContentDir, "000002.dat")
	data, _ := os.ReadFile(content)
	data[0] ^= 1
	if err := os.WriteFile(content, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "altered.tar")
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "board", Out: out2}, io.Discard); err == nil || !strings.Contains(err.Error(), "submission 000002") || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("a backup with an altered content file: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out2)); len(left) != 0 {
		t.Errorf("a failed backup left %v", left)
	}
}

// TestBackupCA checks a CA's archive, made from a database of the CA's
// layout opened by a daemon (here, a store of sqlstore's with a table of its
// own: the archive does not depend on the CA's schema): ca.db, root.pem and
// crl.pem; the root key only when asked (and said); the board token never.
func TestBackupCA(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlstore.Open(filepath.Join(dir, ca.DBFile), sqlstore.Options{Migrations: []sqlstore.Migration{
		{Name: "certificates", SQL: `CREATE TABLE certificates (serial TEXT PRIMARY KEY, sid TEXT NOT NULL) STRICT`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *sql.Tx) error {
		for _, s := range []string{"01", "02"} {
			if _, err := tx.Exec(`INSERT INTO certificates VALUES (?, ?)`, s, "sid-"+s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ca.RootCertFile, ca.RootKeyFile, ca.CRLFile, ca.BoardTokenFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("the "+name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.CA.DataDir = dir
	for _, withKey := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "ca.tar")
		var warn bytes.Buffer
		res, err := Backup(t.Context(), cfg, BackupOptions{Role: "ca", Out: out, IncludeRootKey: withKey}, &warn)
		if err != nil {
			t.Fatal(err)
		}
		names, entries := readArchive(t, out)
		want := []string{ca.DBFile, ca.RootCertFile, ca.CRLFile}
		if withKey {
			want = append(want, ca.RootKeyFile)
		}
		if !slices.Equal(names, want) {
			t.Errorf("with the root key %v: the archive holds %q, want %q", withKey, names, want)
		}
		if said := strings.Contains(warn.String(), "ROOT PRIVATE KEY"); said != withKey {
			t.Errorf("with the root key %v: warned %q", withKey, warn.String())
		}
		if res.Version != 1 || len(res.Tables) != 1 || res.Tables[0].Rows != 2 {
			t.Errorf("the copy: version %d, tables %v", res.Version, res.Tables)
		}
		var printed bytes.Buffer
		PrintBackup(&printed, "ca", res)
		if !strings.Contains(printed.String(), "certificates: 2 rows") || !strings.Contains(printed.String(), "not included: "+ca.BoardTokenFile) {
			t.Errorf("the summary:\n%s", printed.String())
		}
		restored := t.TempDir()
		extract(t, entries, restored)
		if v, tables, err := sqlstore.Inspect(t.Context(), filepath.Join(restored, ca.DBFile)); err != nil || v != 1 || tables[0].Rows != 2 {
			t.Errorf("the restored ca.db: %d %v %v", v, tables, err)
		}
	}
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "ca", Out: filepath.Join(t.TempDir(), "x.tar"), IncludeKey: true}, io.Discard); err == nil {
		t.Error("--include-key was taken for the CA")
	}
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "board", Out: filepath.Join(t.TempDir(), "x.tar"), IncludeRootKey: true}, io.Discard); err == nil {
		t.Error("--include-root-key was taken for the board")
	}
	// A data directory without its database.
	cfg.CA.DataDir = t.TempDir()
	if _, err := Backup(t.Context(), cfg, BackupOptions{Role: "ca", Out: filepath.Join(t.TempDir(), "x.tar")}, io.Discard); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a backup without ca.db: %v", err)
	}
}
