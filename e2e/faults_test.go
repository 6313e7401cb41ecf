package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
)

// requireMounts checks that the test may make mount namespaces and mount in
// them (root, or CAP_SYS_ADMIN): the resource-fault tests give a daemon a
// read-only or tiny file system of its own that way, so that nothing leaks
// to the host and the kernel undoes it when the daemon exits. Without that
// it skips the test, unless PKIBOARD_REQUIRE_MOUNT=1 (as make test sets) makes
// that a failure.
func requireMounts(t *testing.T) {
	t.Helper()
	err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt").Run()
	if err == nil {
		return
	}
	if os.Getenv("PKIBOARD_REQUIRE_MOUNT") == "1" {
		t.Fatalf("mount namespaces are required (PKIBOARD_REQUIRE_MOUNT=1) but unshare -m failed: %v", err)
	}
	t.Skipf("cannot mount in a private namespace (run as root): %v", err)
}

// readOnly is a command prefix that runs a daemon in a mount namespace of its
// own where dir is a read-only bind mount of itself.
func readOnly(dir string) []string {
	return []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"`, "sh", dir}
}

// smallDisk is a command prefix that runs a daemon in a mount namespace of
// its own where dir is an empty tmpfs of the given size (e.g. "16m").
func smallDisk(dir, size string) []string {
	return []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size="$2",mode=0700 tmpfs "$1" && shift 2 && exec "$@"`, "sh", dir, size}
}

// startFails runs a daemon that must refuse to start, and returns its exit
// code and stderr.
func (in *install) startFails(prefix []string, role string, args ...string) (int, string) {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append(append([]string(nil), prefix...), bin, "--config", in.config, "--role="+role), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		in.t.Fatalf("the %s did not stop within 30s; it should have refused to start\n%s", role, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		in.t.Fatalf("the %s started and exited cleanly (%v); it should have refused to start\n%s", role, err, stderr.String())
	}
	return ee.ExitCode(), stderr.String()
}

// inNamespace runs pkiboard inside the mount namespace of the running daemon
// d (with nsenter), so that an operator command sees the daemon's own file
// system.
func (in *install) inNamespace(d *daemon, args ...string) result {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append([]string{"-t", fmt.Sprint(d.Cmd.Process.Pid), "-m", bin, "--config", in.config}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatalf("nsenter %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// treeDigest returns the SHA-256 of every regular file under dir, by path,
// but for the operator socket.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		sums[path] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// TestReadOnlyDataDir starts each daemon with its data directory read-only
// (a read-only bind mount in a namespace of its own): fresh, and holding data.
// It must refuse to start with an error naming the directory, change nothing,
// and start normally once the directory is writable again.
func TestReadOnlyDataDir(t *testing.T) {
	requireMounts(t)
	in := newInstall(t, nil)
	caDir, boardDir := in.path("data", "ca"), in.path("data", "board")
	for _, d := range []string{caDir, boardDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what, role, dir string, code int, stderr string) {
		t.Logf("%s: exit %d: %s", what, code, strings.TrimSpace(stderr))
		if code == 0 || !strings.Contains(stderr, dir) || !strings.Contains(stderr, "not writable") || !strings.Contains(stderr, "read-only file system") {
			t.Errorf("%s: exit %d, stderr %q; want a refusal naming %s as read-only", what, code, stderr, dir)
		}
		if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
			t.Errorf("%s: a stack trace instead of a sentence", what)
		}
	}

	// Fresh installation, read-only: nothing can be created.
	code, stderr := in.startFails(readOnly(caDir), "ca")
	check("fresh CA", "ca", caDir, code, stderr)
	if entries, _ := os.ReadDir(caDir); len(entries) != 0 {
		t.Errorf("the refused CA left %d files in its data directory", len(entries))
	}

	// An installation with data: a CA, a board, a submission.
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	if r := s.student(nil, "--ids", "alice"); r.code != 0 {
		t.Fatalf("student: %d\n%s", r.code, r.stderr)
	}
	caAddr, boardAddr := s.ca.Addr, s.board.Addr
	s.board.stop()
	s.ca.stop()
	before := map[string]map[string]string{"ca": treeDigest(t, caDir), "board": treeDigest(t, boardDir)}

	code, stderr = in.startFails(readOnly(caDir), "ca", "--listen", caAddr)
	check("CA with data", "ca", caDir, code, stderr)
	code, stderr = in.startFails(readOnly(boardDir), "board", "--listen", boardAddr, "--ca-addr", caAddr)
	check("board with data", "board", boardDir, code, stderr)
	for role, dir := range map[string]string{"ca": caDir, "board": boardDir} {
		after := treeDigest(t, dir)
		for path, sum := range before[role] {
			if after[path] != sum {
				t.Errorf("%s changed while its data directory was read-only", path)
			}
		}
	}

	// Writable again: both start with their data, and serve.
	s.ca = in.start("ca", "--listen", caAddr)
	s.board = in.start("board", "--listen", boardAddr, "--ca-addr", caAddr)
	if subs := s.submissions(); len(subs) != 1 || subs[0].SID != "alice" {
		t.Errorf("submissions after the fault: %+v", subs)
	}
	if r := s.student(nil, "--ids", "bob"); r.code != 0 {
		t.Errorf("student after the fault: %d\n%s", r.code, r.stderr)
	}
}

// fillDisk writes a filler file into dir until the file system is full, then
// gives back leave bytes.
func fillDisk(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := f.Truncate(max(0, n-leave)); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFullMidUpload gives the board a 16 MiB file system of its own,
// fills it, and sends an 8 MiB report that cannot fit: the board answers
// storage, keeps its existing submissions whole, lists nothing partial, and
// accepts the retry once space is freed. It then makes the board's data
// directory read-only under the running board, and writable again.
func TestDiskFullMidUpload(t *testing.T) {
	requireMounts(t)
	in := newInstall(t, nil)
	s := &system{install: in}
	s.ca = in.start("ca")
	boardDir := in.path("data", "board")
	if err := os.MkdirAll(boardDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := in.tryStartWith(smallDisk(boardDir, "16m"), "board", "--ca-addr", s.ca.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s.board = b
	view := fmt.Sprintf("/proc/%d/root%s", b.Cmd.Process.Pid, boardDir) // the board's own view of its data directory

	if r := s.student(nil, "--ids", "alice"); r.code != 0 {
		t.Fatalf("student before the fault: %d\n%s", r.code, r.stderr)
	}
	listed := func() []submissionJSON {
		r := in.inNamespace(b, "submissions", "--json")
		var subs []submissionJSON
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &subs) != nil {
			t.Fatalf("submissions --json in the board's namespace: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		return subs
	}
	verify := func(id string) {
		if r := in.inNamespace(b, "submissions", "--verify", id, "--root", in.path("data", "ca", "root.pem")); r.code != 0 || !strings.Contains(r.stdout, "verifies") {
			t.Errorf("submission %s does not verify: %s%s", id, r.stdout, r.stderr)
		}
	}
	first := listed()
	if len(first) != 1 {
		t.Fatalf("submissions before the fault: %+v", first)
	}

	// The disk fills mid-upload.
	fillDisk(t, view+"/filler", 3<<20)
	report := in.path("report.bin")
	sum := writeReport(t, report, 8<<20)
	r := s.student(nil, "--ids", "alice", "--report", report)
	t.Logf("an 8 MiB report with 3 MiB free: exit %d: %s", r.code, lastLine(r.stderr))
	if r.code == 0 || !strings.Contains(r.stderr, "refused (storage)") || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("student with the disk full: exit %d, stderr:\n%s\nwant a storage refusal saying the disk is full", r.code, r.stderr)
	}
	if subs := listed(); len(subs) != 1 || subs[0] != first[0] {
		t.Errorf("submissions after the disk filled: %+v, want only %+v", subs, first[0])
	}
	if !b.loggedAt("error", "no space left on device") {
		t.Error("the board did not log the full disk as an error")
	}
	verify(first[0].ID)
	select {
	case <-b.Exited():
		t.Fatalf("the board died when its disk filled: %v", b.Err())
	default:
	}

	// Space is freed: the retry is accepted.
	if err := os.Remove(view + "/filler"); err != nil {
		t.Fatal(err)
	}
	r = s.student(nil, "--ids", "alice", "--report", report)
	if r.code != 0 {
		t.Fatalf("retry once space was freed: exit %d\n%s", r.code, r.stderr)
	}
	subs := listed()
	if len(subs) != 2 || subs[1].SHA256 != hex.EncodeToString(sum[:]) || subs[1].Size != 8<<20 {
		t.Fatalf("submissions after the retry: %+v", subs)
	}
	verify(subs[1].ID)

	// The data directory turns read-only under the running board (a
	// read-only bind mount over it: what the board opens from now on is
	// read-only), then writable again (the bind mount goes).
	remount := func(script string) {
		t.Helper()
		out, err := exec.Command("nsenter", "-t", fmt.Sprint(b.Cmd.Process.Pid), "-m", "sh", "-c", script, "sh", boardDir).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	const ro, rw = `mount --bind "$1" "$1" && mount -o remount,ro,bind "$1"`, `umount "$1"`
	remount(ro)
	r = s.student(nil, "--ids", "bob")
	t.Logf("a submission with the data directory read-only: exit %d: %s", r.code, lastLine(r.stderr))
	if r.code == 0 || !strings.Contains(r.stderr, "refused (storage)") || !strings.Contains(r.stderr, "read-only file system") {
		t.Errorf("student with the data directory read-only: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if got := listed(); len(got) != 2 {
		t.Errorf("submissions with the data directory read-only: %+v", got)
	}
	remount(rw)
	if r := s.student(nil, "--ids", "bob"); r.code != 0 {
		t.Errorf("student once writable again: exit %d\n%s", r.code, r.stderr)
	}
	if got := listed(); len(got) != 3 {
		t.Errorf("submissions at the end: %+v", got)
	}
	// The commit the read-only directory refused took an id and left it
	// unused (a gap, as a crash would): verify what is listed.
	for _, sub := range listed() {
		verify(sub.ID)
	}
	if b.crashed() {
		t.Errorf("the board's log shows a crash or a race:\n%s", b.Log())
	}
}

// TestCAUnreachableFromBoard takes the CA away from a running board: the board
// keeps serving with the CRL it holds and says it cannot refresh it; a board
// restarted meanwhile starts from its saved certificate and CRL; once that CRL
// expires it refuses sessions (crl_stale = "fail"); when the CA is back, the
// next refresh brings a fresh CRL and sessions are accepted again; the board's
// /readyz is 503 naming the crl check while the CRL is expired, and 200 after the
// refresh. A board
// that has no certificate yet cannot start without the CA, and says so.
func TestCAUnreachableFromBoard(t *testing.T) {
	in := newInstall(t, map[string]string{"ca": `crl_validity = "8s"`, "board": `crl_refresh = "1s"`})
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	caAddr, boardAddr := s.ca.Addr, s.board.Addr
	submit := func(what string) result {
		t.Helper()
		r := s.student(nil, "--ids", "alice")
		if r.code != 0 {
			t.Logf("%s: exit %d: %s", what, r.code, lastLine(r.stderr))
		} else {
			t.Logf("%s: exit 0", what)
		}
		return r
	}
	if r := submit("with the CA up"); r.code != 0 {
		t.Fatalf("%s", r.stderr)
	}
	waitLog := func(d *daemon, msg string, atLeast int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for d.Logged(msg) < atLeast {
			if time.Now().After(deadline) {
				t.Fatalf("the %s did not log %q within 20s", d.Name, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	s.ca.Kill()
	waitLog(s.board, "CRL refresh failed; keeping the one held", 1)
	if r := submit("CA gone, CRL still current"); r.code != 0 {
		t.Errorf("student with the CA gone and a current CRL: %s", r.stderr)
	}

	s.board.stop()
	s.board = in.start("board", "--listen", boardAddr, "--ca-addr", caAddr)
	waitLog(s.board, "could not fetch the CRL from the CA; will retry", 1)
	if r := submit("board restarted without the CA"); r.code != 0 {
		t.Errorf("student after a board restart without the CA: %s", r.stderr)
	}

	crl, err := ca.ParseCRLPEM(mustRead(t, in.path("data", "board", "crl.pem")), mustCert(t, in.path("data", "board", "root.pem")))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(crl.NextUpdate) + time.Second)
	r := submit("the CRL held has expired")
	if r.code == 0 || !strings.Contains(r.stderr, "refused (crl-unavailable)") || !strings.Contains(r.stderr, "expired at") {
		t.Errorf("student with the board's CRL expired: exit %d, stderr:\n%s\nwant crl-unavailable", r.code, r.stderr)
	}
	// The board logs why before it answers; the line may still be on its
	// way through the pipe when the student has exited.
	waitLog(s.board, "session refused: no current CRL", 1)
	// Its /readyz says so too, naming the check (issue 15).
	readyz := "http://" + httpAddr(t, s.board) + "/readyz"
	if code, body := httpGet(t, http.DefaultClient, readyz); code != http.StatusServiceUnavailable || !strings.Contains(body, `"crl"`) {
		t.Errorf("/readyz with the board's CRL expired: %d %s; want 503 naming the crl check", code, body)
	}

	installed := s.board.Logged("CRL installed")
	s.ca = in.start("ca", "--listen", caAddr)
	waitLog(s.board, "CRL installed", installed+1)
	if code, body := httpGet(t, http.DefaultClient, readyz); code != http.StatusOK {
		t.Errorf("/readyz once a fresh CRL is installed: %d %s; want 200", code, body)
	}
	if r := submit("the CA is back"); r.code != 0 {
		t.Errorf("student once the CA is back: %s", r.stderr)
	}

	// A board with no certificate of its own needs the CA to start.
	s.ca.stop()
	code, stderr := in.startFails(nil, "board", "--data-dir", in.path("board2"), "--ca-addr", caAddr)
	t.Logf("a board without a certificate, CA down: exit %d: %s", code, strings.TrimSpace(stderr))
	if code == 0 || !strings.Contains(stderr, caAddr) || !strings.Contains(stderr, "connection refused") {
		t.Errorf("a board without a certificate and no CA: exit %d, stderr %q; want an error naming the CA's address", code, stderr)
	}
	// A second board enrolls with a board token of its own: the first
	// start's one-time token was spent by the first board.
	s.ca = in.start("ca", "--listen", caAddr)
	if err := os.WriteFile(in.path("data", "ca", "board-enroll.token"), []byte(in.token(t, "--board")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in.start("board", "--data-dir", in.path("board2"), "--ca-addr", caAddr)
}

// loggedAt reports whether d logged a record at level whose text (message
// or error) contains substr.
func (d *daemon) loggedAt(level, substr string) bool {
	for _, r := range d.Since(0) {
		if r["level"] != level {
			continue
		}
		if strings.Contains(r.Msg(), substr) || strings.Contains(r.Str("error"), substr) {
			return true
		}
	}
	return false
}

// lastLine returns the last line of a command's output: the student's
// sentence, after its log.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := keys.ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
