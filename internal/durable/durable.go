// Package durable writes files so that a crash never leaves half of one: every
// write goes to a temporary file in the same directory, is fsynced, renamed into
// place, and the directory is fsynced to make the new name durable. Callers
// that place many files in one directory may share that last fsync (WriteContent,
// then one SyncDir).
//
// It is the support floor for every file pkiboard keeps: keys, certificates,
// CRLs, checkpoints, submissions. It knows nothing of what the files hold.
package durable

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile writes data to path so that a crash leaves either the old
// file or the complete new one: it writes a temporary file in the same
// directory with the given mode, fsyncs it, renames it over path, and fsyncs
// the directory. The directory is created with mode 0700 if missing.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	if err := WriteContent(path, data, mode); err != nil {
		return err
	}
	return SyncDir(dir)
}

// WriteContent is WriteFile without the fsync of the directory and
// without creating it: the content at path is durable, its name not yet. It
// lets callers that place many files share one SyncDir.
func WriteContent(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("durable: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("durable: close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	return nil
}

// SyncDir fsyncs a directory, making the names in it durable. On Windows,
// which has no fsync of a directory, it only checks that dir can be opened
// (see syncdir_windows.go).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("durable: %w", err)
	}
	defer d.Close()
	if err := syncDir(d); err != nil {
		return fmt.Errorf("durable: sync directory %s: %w", dir, err)
	}
	return nil
}

// FileSHA256 returns the SHA-256 of the file at path: to check a kept file
// against the hash recorded when it was written.
func FileSHA256(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, fmt.Errorf("durable: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("durable: read %s: %w", path, err)
	}
	h.Sum(sum[:0])
	return sum, nil
}
