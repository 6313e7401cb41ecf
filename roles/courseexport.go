package roles

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"pkiboard/board"
	"pkiboard/internal/config"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/internal/roster"
	"pkiboard/wire"
)

// The files of one student's folder of an export, beside her submission.
const (
	exportReceipt     = "receipt.json"
	exportCertificate = "certificate.pem"
	exportStatement   = "statement.bin"
	exportSignature   = "statement.sig"
	exportManifest    = "manifest.csv"
)

// ExportOptions are the options of `pkiboard export`.
type ExportOptions struct {
	Assignment string
	Out        string // the directory to write; it must not exist or be empty

	// Root is the root certificate file the statements are verified
	// against (--root); without it, board.root_file, else the root the board
	// saved in its data directory. Without any, a statement is checked with
	// the student's certificate's key alone ("signature only").
	Root string
}

// ExportResult says what `pkiboard export` wrote.
type ExportResult struct {
	Students int    // folders written
	Manifest string // the manifest's path
}

// StudentFolder returns the name of sid's folder in an export: sid itself
// when it is a safe file name (wire.SafeName leaves it as it is), else its
// safe name and the first 8 hex digits of its SHA-256, so that two SIDs
// that map to one safe name get two folders. A SID is never used as a path.
func StudentFolder(sid string) string {
	name := wire.SafeName(sid, "sid")
	if name == sid && name != exportManifest {
		return name
	}
	sum := sha256.Sum256([]byte(sid))
	return wire.SafeName(name, "sid") + "-" + hex.EncodeToString(sum[:4])
}

// Export writes the active version of each student's submission to an
// assignment into a new directory (`pkiboard export`): one folder per
// student (StudentFolder), holding the submission under its stored safe
// name, its receipt file (exactly as the student's, PROTOCOL.md §5.5), her
// certificate (PEM), and the statement she signed with its signature
// (statement.bin, statement.sig); and manifest.csv, a line per student. Every
// file is written durably (temporary file, fsync, rename, fsync of its
// directory). It refuses an Out that exists and is not empty.
func Export(_ context.Context, cfg *config.Config, o ExportOptions, w io.Writer) (ExportResult, error) {
	var res ExportResult
	if err := emptyOrAbsent(o.Out); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	entries, err := courseRoster(cfg)
	if err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	root := exportRoot(cfg, o.Root)
	subs, err := assignmentRows(cfg, o.Assignment, "")
	if err != nil {
		return res, fmt.Errorf("export --assignment %s: %w", o.Assignment, err)
	}
	st, err := openBoardStore(cfg.Board.DataDir)
	if err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	defer st.Close()
	if err := os.MkdirAll(o.Out, 0o700); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(filepath.Clean(o.Out))); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if res.Students, err = exportTo(st, entries, o.Assignment, subs, root, dirSink(o.Out)); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	res.Manifest = filepath.Join(o.Out, exportManifest)
	fmt.Fprintf(w, "exported the active version of %d students' submissions to %s into %s, listed in %s\n", res.Students, o.Assignment, o.Out, res.Manifest)
	return res, nil
}

// ExportArchive writes the export of assignment (Export's folders and
// manifest.csv) as a zip archive to w, as it reads it: the console's
// download of the whole export. st is the running board's store; entries
// its roster (nil for none); root the root the statements are verified
// against (nil: "signature only"). A stored content that no longer has its
// SHA-256 stops it with an error, leaving the archive without its end.
func ExportArchive(st *board.Store, entries []roster.Entry, assignment string, root *x509.Certificate, w io.Writer) error {
	subs, err := st.Summaries(assignment, "")
	if err != nil {
		return err
	}
	z := &zipSink{w: zip.NewWriter(w)}
	if _, err := exportTo(st, entries, assignment, subs, root, z); err != nil {
		return fmt.Errorf("export of %s: %w", assignment, err)
	}
	return z.w.Close()
}

// exportSink is where an export goes: a directory (Export) or an archive
// (ExportArchive).
type exportSink interface {
	// Folder starts the folder of one student.
	Folder(folder string) error
	// Content copies the stored content src, whose SHA-256 must be sum,
	// to folder/name.
	Content(folder, name, src string, sum [32]byte) error
	// File writes data to folder/name; folder "" is the export's top.
	File(folder, name string, data []byte) error
	// EndFolder finishes the folder of one student.
	EndFolder(folder string) error
}

// exportTo writes the export of assignment from subs (st.Summaries' rows:
// it reads the evidence of each active one with st.Get) to sink: a folder per student's active version, then the manifest.
// It returns how many folders it wrote.
func exportTo(st *board.Store, entries []roster.Entry, assignment string, subs []board.Submitted, root *x509.Certificate, sink exportSink) (int, error) {
	byRoster := map[string]roster.Entry{}
	for _, e := range entries {
		byRoster[e.SID] = e
	}
	ext, err := st.Extensions(assignment)
	if err != nil {
		return 0, err
	}
	manifest := [][]string{{"sid", "name", "email", "folder", "version", "original_name", "stored_name", "size", "sha256",
		"received", "due", "late_ms", "extension_until", "statement_verified"}}
	used := map[string]bool{exportManifest: true}
	students := 0
	for i := range subs {
		s := &subs[i]
		if !s.Active {
			continue
		}
		folder := StudentFolder(s.SID)
		if used[folder] {
			return students, fmt.Errorf("two students map to the folder %s; nothing more was written", folder)
		}
		used[folder] = true
		// subs are summaries: read this one's evidence, one row at a time.
		rec, err := st.Get(s.ID)
		if err != nil {
			return students, fmt.Errorf("%s: %w", s.SID, err)
		}
		stored, verified, err := exportOne(st, &board.Submitted{Record: *rec, Active: true}, root, folder, sink)
		if err != nil {
			return students, fmt.Errorf("%s: %w", s.SID, err)
		}
		var due, until string
		if s.Due != 0 {
			due = msTextMS(s.Due)
		}
		if e, ok := ext[s.SID]; ok {
			until = msText(&e.Until)
		}
		e := byRoster[s.SID]
		manifest = append(manifest, []string{s.SID, e.Name, e.Email, folder, strconv.FormatUint(uint64(s.Version), 10), s.Original,
			stored, strconv.FormatInt(s.Size, 10), hex.EncodeToString(s.SHA256[:]), msText(&s.Received), due,
			strconv.FormatUint(s.LateMS, 10), until, verified})
		students++
	}
	var buf writerBuffer
	cw := csv.NewWriter(&buf)
	if err := cw.WriteAll(manifest); err != nil {
		return students, err
	}
	return students, sink.File("", exportManifest, buf)
}

// writerBuffer is a byte slice that is an io.Writer.
type writerBuffer []byte

func (b *writerBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// msTextMS writes milliseconds since 1970 as msText does.
func msTextMS(ms uint64) string {
	t := timeMS(ms)
	return msText(&t)
}

// emptyOrAbsent refuses a directory that exists and holds anything, or a
// path that is not a directory.
func emptyOrAbsent(dir string) error {
	if dir == "" {
		return errors.New("give the directory to write with --out DIR")
	}
	list, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--out %s: %w: give a new or empty directory", dir, err)
	case len(list) > 0:
		return fmt.Errorf("--out %s exists and is not empty: give a new or empty directory (an export never writes over another)", dir)
	}
	return nil
}

// exportRoot returns the root the statements are verified against: the
// file given, else board.root_file, else the root the board saved; nil if
// none can be read.
func exportRoot(cfg *config.Config, given string) *x509.Certificate {
	for _, path := range []string{given, cfg.Board.RootFile, filepath.Join(cfg.Board.DataDir, "root.pem")} {
		if path == "" {
			continue
		}
		if root, err := keys.ReadCertificate(path); err == nil {
			return root
		}
		if path == given {
			return nil
		}
	}
	return nil
}

// exportOne writes s's folder to sink and returns the name its content
// has there and what the manifest says of its statement.
func exportOne(st *board.Store, s *board.Submitted, root *x509.Certificate, folder string, sink exportSink) (stored, verified string, err error) {
	if err := sink.Folder(folder); err != nil {
		return "", "", err
	}
	stored = wire.SafeName(s.Name, "report")
	switch stored {
	case exportReceipt, exportCertificate, exportStatement, exportSignature:
		stored = "submitted-" + stored
	}
	receipt, err := s.ReceiptFile()
	if err != nil {
		return "", "", err
	}
	if err := sink.Content(folder, stored, st.ContentPath(&s.Record), s.SHA256); err != nil {
		return "", "", err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{exportReceipt, receipt},
		{exportCertificate, keys.EncodeCertificatePEM(s.StudentCertificate)},
		{exportStatement, s.Statement},
		{exportSignature, s.Signature},
	} {
		if err := sink.File(folder, f.name, f.data); err != nil {
			return "", "", err
		}
	}
	if err := sink.EndFolder(folder); err != nil {
		return "", "", err
	}
	return stored, statementVerdict(st, &s.Record, root), nil
}

// dirSink writes an export into a directory, every file durably.
type dirSink string

func (d dirSink) Folder(folder string) error {
	return os.Mkdir(filepath.Join(string(d), folder), 0o700)
}

func (d dirSink) Content(folder, name, src string, sum [32]byte) error {
	return copyDurable(src, filepath.Join(string(d), folder, name), sum)
}

func (d dirSink) File(folder, name string, data []byte) error {
	if folder == "" {
		return durable.WriteFile(filepath.Join(string(d), name), data, 0o600)
	}
	return durable.WriteContent(filepath.Join(string(d), folder, name), data, 0o600)
}

func (d dirSink) EndFolder(folder string) error {
	if err := durable.SyncDir(filepath.Join(string(d), folder)); err != nil {
		return err
	}
	return durable.SyncDir(string(d))
}

// zipSink writes an export as a zip archive, as it goes.
type zipSink struct{ w *zip.Writer }

func (z *zipSink) Folder(string) error    { return nil }
func (z *zipSink) EndFolder(string) error { return nil }

func (z *zipSink) create(folder, name string) (io.Writer, error) {
	return z.w.CreateHeader(&zip.FileHeader{Name: path.Join(folder, name), Method: zip.Deflate, Modified: time.Now()})
}

func (z *zipSink) File(folder, name string, data []byte) error {
	w, err := z.create(folder, name)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func (z *zipSink) Content(folder, name, src string, sum [32]byte) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	w, err := z.create(folder, name)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if [32]byte(h.Sum(nil)) != sum {
		return fmt.Errorf("the stored content %s does not have the SHA-256 its row records: run pkiboard submissions --verify on it", src)
	}
	return nil
}

// statementVerdict is what the manifest says of a stored statement: "yes"
// when the evidence holds against root (board.Store.Verify: the content, the
// statement the fields make, the student's certificate at the time of
// receipt and her signature, the receipt); "signature only" without a root,
// when her signature verifies with her certificate's key; else "no: " and
// why.
func statementVerdict(st *board.Store, rec *board.Record, root *x509.Certificate) string {
	if root != nil {
		if ev := st.Verify(rec, root, nil); ev.Problem != "" {
			return "no: " + ev.Problem
		}
		return "yes"
	}
	cert, err := x509.ParseCertificate(rec.StudentCertificate)
	if err != nil {
		return "no: " + err.Error()
	}
	if err := keys.Verify(cert.PublicKey, rec.Statement, rec.Signature); err != nil {
		return "no: " + err.Error()
	}
	return "signature only"
}

// copyDurable copies the file src to dst (which must not exist) through a
// temporary file that is fsynced and renamed, and checks that what it copied
// has the SHA-256 want. The caller fsyncs dst's directory.
func copyDurable(src, dst string, want [32]byte) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := out.Name()
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if [32]byte(h.Sum(nil)) != want {
		return fmt.Errorf("the stored content %s does not have the SHA-256 its row records: run pkiboard submissions --verify on it", src)
	}
	if err := out.Chmod(0o600); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
