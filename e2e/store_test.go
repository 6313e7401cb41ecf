package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// sqlite3Bin returns the path of the sqlite3 shell. Without one the test is
// skipped, unless PKIBOARD_REQUIRE_SQLITE3=1 (make test), in which case it
// fails.
func sqlite3Bin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		msg := fmt.Sprintf("sqlite3 not found on PATH (make deps installs it): %v", err)
		if os.Getenv("PKIBOARD_REQUIRE_SQLITE3") == "1" {
			t.Fatalf("%s (PKIBOARD_REQUIRE_SQLITE3=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_SQLITE3=1 to make this a failure", msg)
	}
	return bin
}

// sqlite3 runs the sqlite3 shell in the installation's directory and returns
// its output, trimmed.
func (in *install) sqlite3(args ...string) string {
	in.t.Helper()
	cmd := exec.Command(sqlite3Bin(in.t), args...)
	cmd.Dir = in.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		in.t.Fatalf("sqlite3 %q: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// submitFor sends content as name over a session of id's, and returns the
// receipt it received.
func submitFor(ctx context.Context, addr string, id identity, name string, content []byte) (*wire.Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second})
	sc, err := session.Client(wc, &session.ClientConfig{SID: id.cert.Subject.CommonName, Certificate: id.cert, Key: id.key, Root: id.root, BoardName: "blackboard"})
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	r, _, err := sc.Submit(session.NewSubmitRequest("lab", name, int64(len(content)), sha256.Sum256(content)), bytes.NewReader(content), session.SubmitOptions{})
	return r, err
}

// TestSQLite3ReadsLiveBoard runs the real sqlite3 shell, -readonly, on the
// database of a running board: it reads the rows the sessions just wrote
// (submissions per SID, a row's SHA-256, and the receipt's bytes, which are
// those the student received), and the board goes on storing afterwards.
func TestSQLite3ReadsLiveBoard(t *testing.T) {
	sqlite3Bin(t)
	s := startSystem(t, nil)
	alice, bob := s.enroll(t, "1155000001"), s.enroll(t, "1155000002")
	var receipts []*wire.Receipt
	for _, sub := range []struct {
		id   identity
		text string
	}{{alice, "first"}, {bob, "bob's"}, {alice, "second"}} {
		r, err := submitFor(t.Context(), s.board.Addr, sub.id, "message.txt", []byte(sub.text))
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	db := filepath.Join("data", "board", "board.db")
	if got := s.sqlite3("-readonly", db, "select sid, count(*) from submissions group by sid"); got != "1155000001|2\n1155000002|1" {
		t.Errorf("submissions per SID: got %q", got)
	}
	for _, r := range receipts {
		sent, err := wire.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got := s.sqlite3("-readonly", db, fmt.Sprintf("select sha256, hex(receipt), received from submissions where id = '%s'", r.ID))
		want := fmt.Sprintf("%x|%X|%s", r.SHA256, sent[1:], time.UnixMilli(int64(r.Received)).UTC().Format("2006-01-02T15:04:05.000Z"))
		if got != want {
			t.Errorf("receipt %s: sqlite3 read\n%s\nwant (what the student received)\n%s", r.ID, got, want)
		}
	}
	// A reader while the board writes does not stop it.
	if _, err := submitFor(t.Context(), s.board.Addr, bob, "message.txt", []byte("after the reads")); err != nil {
		t.Fatalf("a submission after sqlite3 read the live store: %v", err)
	}
	if got := s.sqlite3("-readonly", db, "select count(*) from submissions"); got != "4" {
		t.Errorf("rows after one more: %s", got)
	}
}

// TestBoardRefusesForeignWalShm leaves a -wal or -shm file of the board's
// database owned by another user (as a careless sudo sqlite3 would): the
// board refuses to start, naming the file and the chown that fixes it; after
// that chown it starts. It needs root, to give the file away.
func TestBoardRefusesForeignWalShm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user")
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		t.Run(suffix, func(t *testing.T) {
			s := startSystem(t, nil)
			if code := s.board.stop(); code != 0 {
				t.Fatalf("board exit %d", code)
			}
			path := s.path("data", "board", "board.db"+suffix)
			if _, err := os.Stat(path); err != nil {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			const nobody = 65534
			if err := os.Chown(path, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			_, err := s.tryStart("board", "--ca-addr", s.ca.Addr)
			if err == nil {
				t.Fatalf("the board started with %s owned by uid %d", path, nobody)
			}
			if msg := err.Error(); !strings.Contains(msg, path+" belongs to uid 65534") || !strings.Contains(msg, "fix it with: chown root:root "+path) {
				t.Errorf("the refusal does not name the file and the chown:\n%s", msg)
			}
			if err := os.Chown(path, 0, 0); err != nil {
				t.Fatal(err)
			}
			s.board = s.start("board", "--ca-addr", s.ca.Addr)
			if len(s.submissions()) != 0 {
				t.Error("submissions out of nowhere")
			}
		})
	}
}

// TestSecondBoardRefusedByLock starts a second board on the data directory
// of a running one, whose operator socket was removed (so that nothing but
// the database's lock stands in the way): it is refused, with the first
// one's process ID, and the first serves on.
func TestSecondBoardRefusedByLock(t *testing.T) {
	s := startSystem(t, nil)
	if err := os.Remove(s.path("data", "board", "admin.sock")); err != nil {
		t.Fatal(err)
	}
	_, err := s.tryStart("board", "--ca-addr", s.ca.Addr)
	if err == nil {
		t.Fatal("a second board started on the data directory of a running one")
	}
	if msg := err.Error(); !strings.Contains(msg, "database is in use by another process") || !strings.Contains(msg, "pid "+strconv.Itoa(s.board.Cmd.Process.Pid)) {
		t.Errorf("the refusal does not say the database is in use by the first board:\n%s", msg)
	}
	id := s.enroll(t, "1155000001")
	if _, err := submitFor(t.Context(), s.board.Addr, id, "message.txt", []byte("still here")); err != nil {
		t.Errorf("the first board after the second was refused: %v", err)
	}
}

// heldReceipt is a receipt a client received.
type heldReceipt struct {
	r *wire.Receipt
}

// receiptLedger is what the clients of a load received.
type receiptLedger struct {
	mu  sync.Mutex
	got []heldReceipt
}

func (l *receiptLedger) add(r *wire.Receipt) {
	l.mu.Lock()
	l.got = append(l.got, heldReceipt{r: r})
	l.mu.Unlock()
}

func (l *receiptLedger) snapshot() []heldReceipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]heldReceipt(nil), l.got...)
}

// load runs workers that call op until ctx ends or one fails; it returns a
// function that stops them and returns the first error.
func load(ctx context.Context, workers int, op func(ctx context.Context, w, k int) error) func() error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				if err := op(ctx, w, k); err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("worker %d, operation %d: %w", w, k, err)
					}
					return
				}
			}
		})
	}
	return func() error {
		cancel()
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// waitFor waits until cond holds, up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restore extracts an archive as README says: mkdir -m 700 DIR && tar -C DIR
// -xf FILE.
func (in *install) restore(archive, dir string) {
	in.t.Helper()
	if out, err := exec.Command("sh", "-c", `mkdir -m 700 "$1" && tar -C "$1" -xf "$2"`, "sh", dir, archive).CombinedOutput(); err != nil {
		in.t.Fatalf("restore %s into %s: %v\n%s", archive, dir, err, out)
	}
}

var backupRows = regexp.MustCompile(`(?m)^  (board|ca)\.db\s+\d+ bytes\s+schema version (\d+); (.*)$`)

// TestBackupUnderLoadRestoresBoard backs the board up while students submit,
// restores the archive into a fresh directory as README says, and starts a
// board on it: every receipt a student received before the backup began is
// there, byte for byte, listed by pkiboard submissions --json, verified by
// pkiboard submissions --verify, its content file of the receipt's SHA-256;
// and the restored board serves on, with ids after them.
func TestBackupUnderLoadRestoresBoard(t *testing.T) {
	s := startSystem(t, nil)
	var ids []identity
	for i := range 4 {
		ids = append(ids, s.enroll(t, fmt.Sprintf("11550000%02d", i)))
	}
	report := make([]byte, 300<<10) // above board.InMemoryMax: received into a partial file
	for i := range report {
		report[i] = byte(i * 7)
	}
	l := &receiptLedger{}
	stop := load(context.Background(), 6, func(ctx context.Context, w, k int) error {
		name, content := "message.txt", []byte(fmt.Sprintf("worker %d, submission %d\n", w, k))
		if k%4 == 3 {
			name, content = "report.bin", append([]byte(fmt.Sprintf("report %d-%d|", w, k)), report...)
		}
		r, err := submitFor(ctx, s.board.Addr, ids[w%len(ids)], name, content)
		if err != nil {
			return err
		}
		l.add(r)
		return nil
	})
	waitFor(t, "30 receipts", func() bool { return len(l.snapshot()) >= 30 })

	before := l.snapshot() // received before the backup began
	archive := s.path("board-backup.tar")
	b := s.mustRun(nil, "backup", "--role", "board", "--out", archive, "--include-key")
	during := len(l.snapshot()) - len(before)
	waitFor(t, "receipts after the backup", func() bool { return len(l.snapshot()) >= len(before)+during+5 })
	if err := stop(); err != nil {
		t.Fatalf("the load: %v", err)
	}
	t.Logf("backup while students submitted (%d receipts before it began, %d while it ran):\n%s", len(before), during, b.stdout)
	if !strings.Contains(b.stderr, "PRIVATE KEY") {
		t.Errorf("--include-key was not said on stderr: %q", b.stderr)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the archive: %v %v", err, fi.Mode())
	}
	m := backupRows.FindStringSubmatch(b.stdout)
	if m == nil {
		t.Fatalf("the backup does not say the database's rows:\n%s", b.stdout)
	}
	sm := regexp.MustCompile(`(?:^|, )submissions: (\d+) rows`).FindStringSubmatch(m[3])
	if sm == nil {
		t.Fatalf("the backup does not say the submissions' rows:\n%s", b.stdout)
	}
	rows, _ := strconv.Atoi(sm[1])
	if rows < len(before) {
		t.Errorf("the copy holds %d rows, and %d receipts were received before the backup began", rows, len(before))
	}

	// The board is lost; a new one starts on the restored directory.
	if code := s.board.stop(); code != 0 {
		t.Errorf("board exit %d", code)
	}
	dir := s.path("restored")
	s.restore(archive, dir)
	restored := s.start("board", "--data-dir", dir, "--ca-addr", s.ca.Addr)
	var listed []submissionJSON
	out := s.mustRun(nil, "submissions", "--json", "--data-dir", dir)
	if err := json.Unmarshal([]byte(out.stdout), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != rows {
		t.Errorf("the restored board lists %d submissions, the backup said %d rows", len(listed), rows)
	}
	byID := map[string]submissionJSON{}
	for _, sub := range listed {
		byID[sub.ID] = sub
	}
	st, err := board.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rootFile := s.path("data", "ca", "root.pem")
	for _, h := range before {
		r := h.r
		sub, ok := byID[r.ID]
		if !ok || sub.SID != r.SID || sub.SHA256 != hex.EncodeToString(r.SHA256[:]) || sub.Size != int64(r.Size) || sub.Name != r.Name {
			t.Errorf("receipt %s of %s (received before the backup) is not listed as such by the restored board: %+v", r.ID, r.SID, sub)
			continue
		}
		content, err := os.ReadFile(filepath.Join(dir, board.ContentDir, r.ID+".dat"))
		if err != nil || sha256.Sum256(content) != r.SHA256 {
			t.Errorf("receipt %s: the restored content file: %v, or not the receipt's SHA-256", r.ID, err)
		}
		rec, err := st.Get(r.ID)
		sent, _ := wire.Marshal(r)
		if err != nil || !bytes.Equal(rec.Receipt, sent[1:]) {
			t.Errorf("receipt %s: the restored row's receipt is not, byte for byte, the one the student received (%v)", r.ID, err)
		}
		if v := s.run(nil, "submissions", "--data-dir", dir, "--verify", r.ID, "--root", rootFile); v.code != 0 || !strings.Contains(v.stdout, "verifies") {
			t.Errorf("submissions --verify %s on the restored board: exit %d\n%s%s", r.ID, v.code, v.stdout, v.stderr)
		}
	}
	// The restored board serves, with the certificate and key it was backed
	// up with, and ids after the restored ones.
	r, err := submitFor(t.Context(), restored.Addr, ids[0], "message.txt", []byte("after the restore"))
	if err != nil {
		t.Fatalf("a submission to the restored board: %v", err)
	}
	if n, _ := strconv.Atoi(r.ID); n <= len(listed) {
		t.Errorf("the restored board's next id is %s, after %d restored submissions", r.ID, len(listed))
	}
	if restored.Logged("board certificate") != 1 || !strings.Contains(restored.Log(), `"reused":true`) {
		t.Errorf("the restored board did not reuse its certificate:\n%s", restored.Log())
	}
}

// isSQLite reports whether the file at path begins with SQLite's header.
func isSQLite(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var h [16]byte
	n, _ := f.Read(h[:])
	return n == 16 && string(h[:]) == "SQLite format 3\x00"
}

// TestBackupUnderLoadRestoresCA backs the CA up while students enroll,
// restores the archive into a fresh directory, and starts a CA on it: every
// certificate a student received before the backup began is there, for its
// SID (pkiboard certs --json), and the restored CA issues on.
func TestBackupUnderLoadRestoresCA(t *testing.T) {
	in := newInstall(t, nil)
	caD := in.start("ca")
	if !isSQLite(in.path("data", "ca", ca.DBFile)) {
		t.Fatal("ca.db is not an SQLite database")
	}
	root, err := keys.ReadCertificate(in.path("data", "ca", ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(ctx context.Context, addr, sid string) (*ca.Identity, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return ca.ReuseOrEnroll(ctx, ca.IdentityOptions{
			Dir: in.path("students", sid), Name: sid, Root: root, Client: ca.Client{Addr: addr}, KeyAlgorithm: "ecdsa-p256",
		})
	}
	var mu sync.Mutex
	type issued struct{ sid, serial string }
	var got []issued
	stop := load(context.Background(), 6, func(ctx context.Context, w, k int) error {
		sid := fmt.Sprintf("backup-%d-%d", w, k)
		id, err := enroll(ctx, caD.Addr, sid)
		if err != nil {
			return err
		}
		mu.Lock()
		got = append(got, issued{sid, keys.SerialHex(id.Certificate.SerialNumber)})
		mu.Unlock()
		return nil
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor(t, "30 certificates", func() bool { return count() >= 30 })
	mu.Lock()
	before := append([]issued(nil), got...)
	mu.Unlock()
	archive := in.path("ca-backup.tar")
	b := in.mustRun(nil, "backup", "--role", "ca", "--out", archive, "--include-root-key")
	waitFor(t, "certificates after the backup", func() bool { return count() >= len(before)+5 })
	if err := stop(); err != nil {
		t.Fatalf("the load: %v", err)
	}
	t.Logf("backup while students enrolled (%d certificates before it began):\n%s", len(before), b.stdout)
	if !strings.Contains(b.stderr, "ROOT PRIVATE KEY") {
		t.Errorf("--include-root-key was not said on stderr: %q", b.stderr)
	}
	if code := caD.stop(); code != 0 {
		t.Errorf("CA exit %d", code)
	}
	dir := in.path("restored-ca")
	in.restore(archive, dir)
	if _, err := os.Stat(filepath.Join(dir, ca.BoardTokenFile)); err == nil {
		t.Error("the archive held the board token")
	}
	restored := in.start("ca", "--data-dir", dir)
	var views []ca.CertView
	if err := json.Unmarshal([]byte(in.mustRun(nil, "certs", "--json", "--data-dir", dir).stdout), &views); err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, v := range views {
		stored[v.Serial] = v.SID
	}
	for _, c := range before {
		if stored[c.serial] != c.sid {
			t.Errorf("certificate %s that %s received before the backup is not in the restored CA", c.serial, c.sid)
		}
	}
	if _, err := enroll(t.Context(), restored.Addr, "after-the-restore"); err != nil {
		t.Errorf("an enrollment with the restored CA: %v", err)
	}
}
