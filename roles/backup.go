package roles

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
)

// BackupOptions say what `pkiboard backup` copies.
type BackupOptions struct {
	Role string // "ca" or "board"
	Out  string // the archive to write; it must not exist

	// IncludeRootKey puts the CA's root key (root-key.pem) in a CA's
	// archive.
	IncludeRootKey bool
	// IncludeKey puts the board's private key (key.pem, and next-key.pem
	// during a renewal) in a board's archive.
	IncludeKey bool
}

// BackupResult says what an archive holds.
type BackupResult struct {
	Out     string
	Size    int64        // of the archive
	Files   []BackupFile // in the archive's order
	Version int          // the database copy's schema version
	Tables  []sqlstore.TableRows
	Content struct { // the board's submission files
		Files int
		Bytes int64
	}
	Left []string // what is not in it, and why
}

// BackupFile is one file in an archive.
type BackupFile struct {
	Name string
	Size int64
}

// Backup writes an archive of a daemon's data directory while the daemon
// serves (or not): a consistent copy of its database, made with VACUUM INTO
// on a read-only connection of this process, and the files a restored
// daemon needs. For the board: board.db, then the content file of every row
// the copy holds (read after the copy, so each is there, and checked against
// its row's size and SHA-256 as it is copied), root.pem, cert.pem, crl.pem and
// status.bin; key.pem (and next-key.pem) only with IncludeKey. For the CA:
// ca.db, root.pem and crl.pem; root-key.pem only with IncludeRootKey; the
// board token never. The archive is a tar file, written with mode 0600 under
// a temporary name beside Out, synced, and linked to Out, which must not
// exist. Private keys are said loudly on warn.
func Backup(ctx context.Context, cfg *config.Config, o BackupOptions, warn io.Writer) (*BackupResult, error) {
	var dataDir string
	switch o.Role {
	case "board":
		dataDir = cfg.Board.DataDir
		if o.IncludeRootKey {
			return nil, errors.New("backup: --include-root-key is for --role ca; the board's key is --include-key")
		}
	case "ca":
		dataDir = cfg.CA.DataDir
		if o.IncludeKey {
			return nil, errors.New("backup: --include-key is for --role board; the CA's root key is --include-root-key")
		}
	default:
		return nil, fmt.Errorf("backup: --role %q: give --role ca or --role board", o.Role)
	}
	b, err := newBackup(dataDir, o.Out)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer b.abort()
	if o.Role == "board" {
		err = b.board(ctx, o.IncludeKey, warn)
	} else {
		err = b.ca(ctx, o.IncludeRootKey, warn)
	}
	if err == nil {
		err = b.finish()
	}
	if err != nil {
		return nil, fmt.Errorf("backup of the %s's %s: %w", o.Role, dataDir, err)
	}
	return &b.res, nil
}

// backup is an archive being written.
type backup struct {
	dir      string // the data directory
	out      string
	tmp      *os.File // the archive under its temporary name
	work     string   // a private directory for the database's copy
	tw       *tar.Writer
	uid, gid int // the data directory's owner, the archive's files' owner
	uname    string
	gname    string
	res      BackupResult
	done     bool
}

func newBackup(dataDir, out string) (*backup, error) {
	fi, err := os.Stat(dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("%s exists; it is not overwritten: remove it, or give another --out", out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b := &backup{dir: dataDir, out: out, uid: os.Geteuid(), gid: os.Getegid()}
	b.res.Out = out
	if uid, gid, ok := fileOwner(fi); ok {
		b.uid, b.gid = uid, gid
	}
	if u, err := user.LookupId(strconv.Itoa(b.uid)); err == nil {
		b.uname = u.Username
	}
	if g, err := user.LookupGroupId(strconv.Itoa(b.gid)); err == nil {
		b.gname = g.Name
	}
	if b.tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*"); err != nil { // mode 0600
		return nil, err
	}
	if b.work, err = os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".db-*"); err != nil { // mode 0700
		b.abort()
		return nil, err
	}
	b.tw = tar.NewWriter(b.tmp)
	return b, nil
}

// abort removes what an unfinished backup wrote; after finish, only the
// database's copy.
func (b *backup) abort() {
	if b.work != "" {
		os.RemoveAll(b.work)
	}
	if b.tmp != nil && !b.done {
		b.tmp.Close()
		os.Remove(b.tmp.Name())
	}
}

// finish closes the archive, syncs it and links it to its name.
func (b *backup) finish() error {
	if err := b.tw.Close(); err != nil {
		return err
	}
	if err := b.tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := b.tmp.Sync(); err != nil {
		return err
	}
	fi, err := b.tmp.Stat()
	if err != nil {
		return err
	}
	if err := b.tmp.Close(); err != nil {
		return err
	}
	// A link, not a rename: it fails, rather than replaces, if the name was
	// taken meanwhile.
	if err := os.Link(b.tmp.Name(), b.out); err != nil {
		return err
	}
	b.done = true
	os.Remove(b.tmp.Name())
	if err := durable.SyncDir(filepath.Dir(b.out)); err != nil {
		return err
	}
	b.res.Size = fi.Size()
	return nil
}

// header is the tar header of a file or directory of the archive: owned by
// the data directory's owner, so that tar run by root restores it to that
// user, with the modes the daemon gives its files.
func (b *backup) header(name string, size int64, mod time.Time, dir bool) *tar.Header {
	h := &tar.Header{Name: name, Size: size, Mode: 0o600, ModTime: mod.Truncate(time.Second), Typeflag: tar.TypeReg,
		Uid: b.uid, Gid: b.gid, Uname: b.uname, Gname: b.gname, Format: tar.FormatPAX}
	if dir {
		h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o700, 0
	}
	return h
}

// copyDatabase copies the database dbName of the data directory into the
// archive: VACUUM INTO a private file, checked and counted, then archived.
// It returns the copy's path.
func (b *backup) copyDatabase(ctx context.Context, dbName string) (string, error) {
	src := filepath.Join(b.dir, dbName)
	if err := readAsOwner(src); err != nil {
		return "", err
	}
	copyPath := filepath.Join(b.work, dbName)
	if err := sqlstore.BackupFile(ctx, src, copyPath); err != nil {
		return "", err
	}
	version, tables, err := sqlstore.Inspect(ctx, copyPath)
	if err != nil {
		return "", fmt.Errorf("the copy of %s: %w", dbName, err)
	}
	b.res.Version, b.res.Tables = version, tables
	f, err := os.Open(copyPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := b.addFile(dbName, f, nil, nil); err != nil {
		return "", err
	}
	return copyPath, nil
}

// addFile archives the open file f as name. If sum is set, the bytes must
// have that SHA-256 (h hashes them as they are copied).
func (b *backup) addFile(name string, f *os.File, h hash.Hash, sum []byte) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	if err := b.tw.WriteHeader(b.header(name, fi.Size(), fi.ModTime(), false)); err != nil {
		return err
	}
	var w io.Writer = b.tw
	if h != nil {
		w = io.MultiWriter(b.tw, h)
	}
	if _, err := io.CopyN(w, f, fi.Size()); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	if h != nil && string(h.Sum(nil)) != string(sum) {
		return fmt.Errorf("%s does not have the SHA-256 its row records: it was altered after it was stored", f.Name())
	}
	b.res.Files = append(b.res.Files, BackupFile{Name: name, Size: fi.Size()})
	return nil
}

// addBytes archives data as name, modified at mod.
func (b *backup) addBytes(name string, data []byte, mod time.Time) error {
	if err := b.tw.WriteHeader(b.header(name, int64(len(data)), mod, false)); err != nil {
		return err
	}
	if _, err := b.tw.Write(data); err != nil {
		return err
	}
	b.res.Files = append(b.res.Files, BackupFile{Name: name, Size: int64(len(data))})
	return nil
}

// smallFile is a file of the data directory read whole.
type smallFile struct {
	name string
	data []byte
	mod  time.Time
}

// readSmall reads the named files of the data directory; a missing one is
// left out and said in res.Left with why.
func (b *backup) readSmall(names []string, why map[string]string) ([]smallFile, error) {
	var out []smallFile
	for _, name := range names {
		path := filepath.Join(b.dir, name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			if w := why[name]; w != "" {
				b.res.Left = append(b.res.Left, name+" (there is none: "+w+")")
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, smallFile{name: name, data: data, mod: fi.ModTime()})
	}
	return out, nil
}

// board archives a board's data directory.
func (b *backup) board(ctx context.Context, includeKey bool, warn io.Writer) error {
	copyPath, err := b.copyDatabase(ctx, board.DBFile)
	if err != nil {
		return err
	}
	// The rows of the copy name the files to archive: each was durable
	// before its row was committed, and the board never deletes one.
	st, err := board.OpenReadOnly(filepath.Dir(copyPath))
	if err != nil {
		return fmt.Errorf("the copy of %s: %w", board.DBFile, err)
	}
	recs, err := st.List()
	st.Close()
	if err != nil {
		return fmt.Errorf("the copy of %s: %w", board.DBFile, err)
	}
	if err := b.tw.WriteHeader(b.header(board.ContentDir+"/", 0, time.Now(), true)); err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		f, err := os.Open(filepath.Join(b.dir, board.ContentDir, filepath.Base(r.File)))
		if err != nil {
			return fmt.Errorf("submission %s: %w", r.ID, err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() != r.Size {
			err = fmt.Errorf("%s holds %d bytes, and its row records %d: it was altered after it was stored", f.Name(), fi.Size(), r.Size)
		}
		if err == nil {
			err = b.addFile(board.ContentDir+"/"+filepath.Base(r.File), f, sha256.New(), r.SHA256[:])
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("submission %s from %s: %w (pkiboard submissions --verify %s says more)", r.ID, r.SID, err, r.ID)
		}
		b.res.Content.Files++
		b.res.Content.Bytes += r.Size
	}
	why := map[string]string{
		ca.RootFile:      "the board saves the root at its first start",
		ca.CertFile:      "the board has not enrolled yet",
		"crl.pem":        "the board has not had a CRL from the CA yet",
		board.StatusFile: "the board has not had a status from the CA yet",
	}
	files, err := b.readSmall([]string{ca.RootFile, ca.CertFile, "crl.pem", board.StatusFile}, why)
	if err != nil {
		return err
	}
	if includeKey {
		files, err = b.boardKeys(files)
		if err != nil {
			return err
		}
		fmt.Fprintf(warn, "WARNING: the archive %s holds the board's PRIVATE KEY (%s): whoever has it can sign receipts as the board until its certificate is revoked; keep it as safe as the board itself\n", b.out, ca.KeyFile)
	} else {
		b.res.Left = append(b.res.Left, ca.KeyFile+" (the board's private key: give --include-key to include it; without it, the restored board enrolls a new certificate with a new board token)")
	}
	for _, f := range files {
		if err := b.addBytes(f.name, f.data, f.mod); err != nil {
			return err
		}
	}
	b.res.Left = append(b.res.Left, partialDir+"/ (interrupted uploads: never acknowledged; the students' next attempts start again)")
	return nil
}

// partialDir is the board's directory of interrupted uploads.
const partialDir = "partial"

// boardKeys adds the board's key.pem (and next-key.pem, during a renewal)
// to files, read with cert.pem so that the certificate is for one of them: a
// renewal that replaces both between the reads is read again.
func (b *backup) boardKeys(files []smallFile) ([]smallFile, error) {
	for range 10 {
		keyFiles, err := b.readSmall([]string{ca.KeyFile, ca.NextKeyFile}, nil)
		if err != nil {
			return nil, err
		}
		certFile, err := b.readSmall([]string{ca.CertFile}, nil)
		if err != nil {
			return nil, err
		}
		if len(keyFiles) == 0 {
			return nil, fmt.Errorf("--include-key: the board has no %s in %s", ca.KeyFile, b.dir)
		}
		if len(certFile) == 0 || certMatches(certFile[0].data, keyFiles) {
			// The certificate read with the keys replaces the one read
			// before, in its place.
			out := files[:0:0]
			placed := false
			for _, f := range files {
				if f.name != ca.CertFile {
					out = append(out, f)
				} else if len(certFile) > 0 {
					out, placed = append(out, certFile[0]), true
				}
			}
			if !placed {
				out = append(out, certFile...)
			}
			return append(out, keyFiles...), nil
		}
		time.Sleep(10 * time.Millisecond) // a renewal is writing them
	}
	return nil, fmt.Errorf("--include-key: %s is for neither %s nor %s, read ten times: is a renewal stuck?", ca.CertFile, ca.KeyFile, ca.NextKeyFile)
}

// certMatches reports whether the certificate (PEM) is for one of the keys.
func certMatches(certPEM []byte, keyFiles []smallFile) bool {
	certs, err := keys.ParseCertificatesPEM(certPEM)
	if err != nil || len(certs) == 0 {
		return false
	}
	cert := certs[0]
	for _, k := range keyFiles {
		key, err := keys.ParsePrivatePEM(k.data, nil)
		if err == nil && keys.SamePublicKey(cert.PublicKey, key.Public()) {
			return true
		}
	}
	return false
}

// ca archives a CA's data directory.
func (b *backup) ca(ctx context.Context, includeRootKey bool, warn io.Writer) error {
	if _, err := b.copyDatabase(ctx, ca.DBFile); err != nil {
		return err
	}
	why := map[string]string{
		ca.RootCertFile: "the CA makes it at its first start",
		ca.CRLFile:      "the CA writes it at its first start",
	}
	names := []string{ca.RootCertFile, ca.CRLFile}
	if includeRootKey {
		names = append(names, ca.RootKeyFile)
		why[ca.RootKeyFile] = "the root key is kept elsewhere"
	}
	files, err := b.readSmall(names, why)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := b.addBytes(f.name, f.data, f.mod); err != nil {
			return err
		}
		if f.name == ca.RootKeyFile {
			fmt.Fprintf(warn, "WARNING: the archive %s holds the CA's ROOT PRIVATE KEY (%s): whoever has it can issue certificates and CRLs for the whole course; keep it offline, encrypted, and as safe as the CA itself\n", b.out, ca.RootKeyFile)
		}
	}
	if !includeRootKey {
		b.res.Left = append(b.res.Left, ca.RootKeyFile+" (the root's private key: give --include-root-key to include it; without it, the restored CA cannot sign)")
	}
	b.res.Left = append(b.res.Left, ca.BoardTokenFile+" (never: a one-time secret; make a new one with pkiboard token --board)")
	return nil
}

// PrintBackup says what an archive holds.
func PrintBackup(w io.Writer, role string, res *BackupResult) {
	fmt.Fprintf(w, "wrote %s (%d bytes, mode 0600), a backup of the %s:\n", res.Out, res.Size, role)
	tw := newTable(w)
	for _, f := range res.Files {
		if role == "board" && filepath.Dir(f.Name) == board.ContentDir {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d bytes", f.Name, f.Size)
		if f.Name == board.DBFile || f.Name == ca.DBFile {
			fmt.Fprintf(tw, "\tschema version %d;", res.Version)
			for _, t := range res.Tables {
				fmt.Fprintf(tw, " %s: %d rows", t.Table, t.Rows)
				if t != res.Tables[len(res.Tables)-1] {
					fmt.Fprint(tw, ",")
				}
			}
		}
		fmt.Fprintln(tw)
		if f.Name == board.DBFile {
			fmt.Fprintf(tw, "  %s/\t%d bytes\t%d files, one per row, each checked against its row's SHA-256\n", board.ContentDir, res.Content.Bytes, res.Content.Files)
		}
	}
	tw.Flush()
	for _, l := range res.Left {
		fmt.Fprintf(w, "not included: %s\n", l)
	}
	fmt.Fprintf(w, "restore: mkdir -m 700 DIR && tar -C DIR -xf %s, then set %s.data_dir to DIR and start the %s\n", res.Out, role, role)
}
