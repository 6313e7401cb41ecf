package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestBackupUnderWrites backs up while four writers go on: the copy opens
// with Open, holds every write acknowledged before Backup was called, is
// 0600, and no temporary file is left; Backup refuses to overwrite a file;
// a read-only open can back up too.
func TestBackupUnderWrites(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	going, failed := make(chan struct{}), make(chan struct{}) // 200 writes acknowledged; a writer failed
	var once sync.Once
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%06d", w, i)
				if err := db.Update(put(k)); err != nil {
					t.Error(err)
					once.Do(func() { close(failed) })
					return
				}
				mu.Lock()
				if acked = append(acked, k); len(acked) == 200 {
					close(going)
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-going:
	case <-failed:
		close(stop)
		wg.Wait()
		t.FailNow()
	}
	mu.Lock()
	before := slices.Clone(acked)
	mu.Unlock()
	dir := t.TempDir()
	dst := filepath.Join(dir, "backup.db")
	err := db.Backup(context.Background(), dst)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode: got %v want 0600", fi.Mode().Perm())
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"backup.db"}) {
		t.Errorf("files beside the backup: %v", got)
	}
	if err := db.Backup(context.Background(), dst); !errors.Is(err, fs.ErrExist) {
		t.Errorf("backup over an existing file: got %v want fs.ErrExist", err)
	}
	ro := openT(t, path, Options{ReadOnly: true})
	if err := ro.Backup(context.Background(), filepath.Join(dir, "from-read-only.db")); err != nil {
		t.Errorf("backup of a read-only open: %v", err)
	}
	copied := openT(t, dst, Options{})
	have := map[string]bool{}
	for _, k := range keys(t, copied) {
		have[k] = true
	}
	for _, k := range before {
		if !have[k] {
			t.Errorf("the backup lacks %s, acknowledged before Backup was called", k)
		}
	}
	t.Logf("%d writes acknowledged before Backup, %d in the copy, %d by the end", len(before), len(have), len(acked))
}

// sqlite3 runs the sqlite3 shell and returns its output.
func sqlite3(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(sqlite3Bin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %q: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestSQLite3ReadsLiveStore reads with the real sqlite3 shell, -readonly, a
// database the package holds open: it sees the rows Update committed, not
// those of a transaction still open, and neither waits for the other.
func TestSQLite3ReadsLiveStore(t *testing.T) {
	path := tempPath(t)
	db := openT(t, path, Options{})
	for i := range 20 {
		if err := db.Update(put(fmt.Sprintf("k%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	query := `SELECT count(*), min(k), max(k) FROM items`
	if got, want := sqlite3(t, "-readonly", path, query), "20|k000|k019"; got != want {
		t.Errorf("sqlite3: got %q want %q", got, want)
	}
	// An uncommitted write: the shell reads the last commit and does not
	// wait; the write commits after.
	release, first := blockCommitter(t, db)
	if got, want := sqlite3(t, "-readonly", path, query), "20|k000|k019"; got != want {
		t.Errorf("sqlite3 during a write: got %q want %q", got, want)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got, want := sqlite3(t, "-readonly", path, query), "21|blocker|k019"; got != want {
		t.Errorf("sqlite3 after the write: got %q want %q", got, want)
	}
	if got := sqlite3(t, "-readonly", path, "PRAGMA journal_mode; PRAGMA user_version"); got != "wal\n"+strconv.Itoa(len(testMigrations)) {
		t.Errorf("sqlite3: journal mode and version: got %q", got)
	}
}

// TestOFDLocksSurviveClose opens and closes the database file in the
// process, as any code may (a hash, a copy), and then lets the sqlite3 shell
// open and close the database read-write. With POSIX locks the close would
// have dropped the process's shared lock on the file, the shell would have
// believed itself the last user and deleted the WAL under the open database;
// with OFD locks the WAL stays and the database goes on.
func TestOFDLocksSurviveClose(t *testing.T) {
	bin := sqlite3Bin(t)
	path := tempPath(t)
	db := openT(t, path, Options{})
	if err := db.Update(put("a")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(bin, path, "SELECT count(*) FROM items").CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the WAL of the open database is gone after the shell closed: %v", err)
	}
	if err := db.Update(put("b")); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, db); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("items: got %v want [a b]", got)
	}
}
