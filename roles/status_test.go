package roles

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pkiboard/session"
	"pkiboard/wire"
)

// TestStudentRemembersCRLNumber checks the student's memory of the board's
// status (PROTOCOL.md §5.1, STEP 5): after a session it keeps the status's CRL
// number in student.data_dir, and a board that later staples an older status
// is refused stale-status; the same or a newer one is accepted.
func TestStudentRemembersCRLNumber(t *testing.T) {
	p := newStepPKI(t)
	dir := t.TempDir()
	run := func(n uint64) stepRun {
		t.Helper()
		return runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard",
			stepOptions{status: p.status(t, n, false), dataDir: dir})
	}
	if r := run(7); r.err != nil {
		t.Fatalf("a board of status 7: %v", r.err)
	}
	seen, err := newCRLSeen(dir).highest(p.root)
	if err != nil || seen != 7 {
		t.Fatalf("the student remembers CRL number %d (%v), want 7", seen, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, crlSeenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, mode %v; want 0600", crlSeenFile, err, fi.Mode().Perm())
	}
	r := run(6)
	var refusal *wire.Refusal
	if !errors.As(r.err, &refusal) || refusal.Code != wire.CodeStaleStatus {
		t.Fatalf("a board of an older status: got %v, want the student's stale-status", r.err)
	}
	wantLine(t, "student", r.student, "STEP 5: board not accepted; session refused", map[string]any{"code": "stale-status", "step": 5})
	for _, n := range []uint64{7, 8} {
		if r := run(n); r.err != nil {
			t.Errorf("a board of status %d: %v", n, r.err)
		}
	}
	if seen, _ := newCRLSeen(dir).highest(p.root); seen != 8 {
		t.Errorf("the student remembers CRL number %d, want 8", seen)
	}
}

// TestBoardWithoutStatus checks that a board that holds no status of its own
// refuses sessions crl-unavailable: it fails closed rather than staple
// nothing. One whose status says it is revoked staples it, and the student
// refuses it board-revoked.
func TestBoardWithoutStatus(t *testing.T) {
	p := newStepPKI(t)
	r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{status: []byte{}})
	var peer *wire.Error
	if !errors.As(r.err, &peer) || peer.Code != wire.CodeCRLUnavailable {
		t.Errorf("no status: got %v, want the board's crl-unavailable", r.err)
	}
	r = runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{status: p.status(t, 1, true)})
	var refusal *wire.Refusal
	if !errors.As(r.err, &refusal) || refusal.Code != wire.CodeBoardRevoked {
		t.Errorf("a revoked status: got %v, want the student's board-revoked", r.err)
	}
}

// TestBusyRetrySendsAFreshHello checks that a student told busy connects
// again with a new hello (PROTOCOL.md §5.1: every hello is fresh), which the
// board accepts.
func TestBusyRetrySendsAFreshHello(t *testing.T) {
	p := newStepPKI(t)
	r := runStepsWith(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard", stepOptions{busyFirst: true})
	if r.err != nil {
		t.Fatalf("after busy: %v", r.err)
	}
	if len(r.hellos) != 2 {
		t.Fatalf("the board read %d hellos, want 2", len(r.hellos))
	}
	if bytes.Equal(r.hellos[0], r.hellos[1]) {
		t.Error("the student sent the same hello again after busy")
	}
	var first, second *wire.ClientHello
	for i, dst := range []**wire.ClientHello{&first, &second} {
		h, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(r.hellos[i]))
		if err != nil {
			t.Fatal(err)
		}
		*dst = h
	}
	if first.Random == second.Random || bytes.Equal(first.KEMPublic, second.KEMPublic) || bytes.Equal(first.Signature, second.Signature) {
		t.Error("the second hello reuses the first's random, X-Wing key or signature")
	}
}

// TestCRLSeenFile checks the file of CRL numbers: per root, only ever higher,
// shared by concurrent IDs, the larger number kept when another process wrote
// one in between, and a damaged file refused with what to do.
func TestCRLSeenFile(t *testing.T) {
	p := newStepPKI(t)
	other := newStepPKI(t)
	dir := t.TempDir()
	c := newCRLSeen(dir)
	var wg sync.WaitGroup
	for n := range uint64(20) {
		wg.Go(func() {
			if err := c.saw(p.root, n); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n, err := c.highest(p.root); err != nil || n != 19 {
		t.Errorf("after 0..19: %d (%v), want 19", n, err)
	}
	if err := c.saw(p.root, 3); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.highest(p.root); n != 19 {
		t.Errorf("a lower number lowered it: %d", n)
	}
	if n, _ := c.highest(other.root); n != 0 {
		t.Errorf("another root has %d, want 0", n)
	}
	// Another process writes 50 in between: this one's 20 does not undo it.
	if err := newCRLSeen(dir).saw(p.root, 50); err != nil {
		t.Fatal(err)
	}
	if err := c.saw(p.root, 20); err != nil {
		t.Fatal(err)
	}
	if err := c.saw(other.root, 4); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.highest(p.root); n != 50 {
		t.Errorf("after another process wrote 50: %d", n)
	}
	if n, _ := c.highest(other.root); n != 4 {
		t.Errorf("the other root: %d, want 4", n)
	}
	if err := os.WriteFile(filepath.Join(dir, crlSeenFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.highest(p.root); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("a damaged file: got %v, want an error that says what to do", err)
	}
}
