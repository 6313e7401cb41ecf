package e2e

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"pkiboard/board"
	"pkiboard/internal/keys"
	"pkiboard/internal/proc"
	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// system is a CA and a board running from one installation.
type system struct {
	*install
	ca, board *daemon
}

// startSystem starts the CA, then the board (which enrolls with it), and
// points the student section of the config at both.
func startSystem(t *testing.T, extra map[string]string) *system {
	t.Helper()
	in := newInstall(t, extra)
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	return s
}

// student runs the student role against the system.
func (s *system) student(env []string, args ...string) result {
	s.t.Helper()
	return s.run(env, append([]string{"--role=student", "--ca-addr", s.ca.Addr, "--board-addr", s.board.Addr}, args...)...)
}

func message(sid string) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("This is submission from %s.\n", sid)), 10)
}

type submissionJSON struct {
	ID, SID, Name, SHA256 string
	Size                  int64
	Resumed               int64 `json:"resumed_from"`
}

func (s *system) submissions() []submissionJSON {
	s.t.Helper()
	r := s.mustRun(nil, "submissions", "--json")
	var subs []submissionJSON
	if err := json.Unmarshal([]byte(r.stdout), &subs); err != nil {
		s.t.Fatalf("submissions --json: %v\n%s", err, r.stdout)
	}
	return subs
}

var receiptLine = regexp.MustCompile(`(?m)^(\S+) submitted: receipt (\d+), SHA-256 ([0-9a-f]{64}), saved as (\S+)$`)

func TestScenarioThreeStudents(t *testing.T) {
	s := startSystem(t, nil)
	sids := []string{"1155000001", "1155000002", "1155000003"}
	r := s.student(nil, "--ids", strings.Join(sids, ","))
	if r.code != 0 {
		t.Fatalf("student exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, sid := range sids {
		if !strings.Contains(r.stdout, sid+" sign finished\n") {
			t.Errorf("stdout lacks %q", sid+" sign finished")
		}
	}
	receipts := receiptLine.FindAllStringSubmatch(r.stdout, -1)
	if len(receipts) != len(sids) {
		t.Fatalf("receipt lines: got %d want %d\n%s", len(receipts), len(sids), r.stdout)
	}
	for _, m := range receipts {
		sid, sum, path := m[1], m[3], m[4]
		want := sha256.Sum256(message(sid))
		if sum != hex.EncodeToString(want[:]) {
			t.Errorf("%s: receipt SHA-256 %s is not that of the message sent", sid, sum)
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(s.dir, path)
		}
		v := s.mustRun(nil, "verify-receipt", "--root", s.path("data", "ca", "root.pem"), "--board-name", "blackboard", path)
		if !strings.Contains(v.stdout, "verifies") {
			t.Errorf("verify-receipt %s: %q", path, v.stdout)
		}
	}
	subs := s.submissions()
	if len(subs) != len(sids) {
		t.Fatalf("pkiboard submissions lists %d, want exactly %d", len(subs), len(sids))
	}
	for _, sub := range subs {
		s.mustRun(nil, "submissions", "--verify", sub.ID, "--root", s.path("data", "ca", "root.pem"))
	}
	for _, step := range []string{"STEP 3", "STEP 4", "STEP 6"} {
		if n := s.board.Logged(step); n != len(sids) {
			t.Errorf("board %s lines: got %d want %d", step, n, len(sids))
		}
	}
	if code := s.board.stop(); code != 0 {
		t.Errorf("board exit after SIGTERM: got %d want 0", code)
	}
	// With the board stopped, read its store: each content is what was sent.
	st, err := board.Open(s.path("data/board"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		got, err := os.ReadFile(st.ContentPath(&rec))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, message(rec.SID)) {
			t.Errorf("stored content of %s differs from what was sent", rec.SID)
		}
	}
}

// identity is a student key and certificate on disk, as a test holds them.
type identity struct {
	key  crypto.Signer
	cert *x509.Certificate
	root *x509.Certificate
}

func (s *system) enroll(t *testing.T, sid string) identity {
	t.Helper()
	dir := s.path("ids", sid)
	s.mustRun(nil, "enroll", "--sid", sid, "--out", dir, "--ca-addr", s.ca.Addr)
	return loadIdentity(t, dir)
}

func loadIdentity(t *testing.T, dir string) identity {
	t.Helper()
	key, err := keys.ReadPrivateKey(filepath.Join(dir, "key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := keys.ReadCertificate(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := keys.ReadCertificate(filepath.Join(dir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return identity{key: key, cert: cert, root: root}
}

// submitAs runs a session to the board as sid with the given certificate and
// key and submits the lab message; it returns the error (nil on a receipt).
func submitAs(t *testing.T, addr, sid string, cert *x509.Certificate, key crypto.Signer, root *x509.Certificate) error {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second})
	wc.SetDeadline(time.Now().Add(15 * time.Second))
	sc, err := session.Client(wc, &session.ClientConfig{SID: sid, Certificate: cert, Key: key, Root: root, BoardName: "blackboard"})
	if err != nil {
		return err
	}
	defer sc.Close()
	msg := message(sid)
	_, _, err = sc.Submit(session.NewSubmitRequest("lab", "message.txt", int64(len(msg)), sha256.Sum256(msg)), bytes.NewReader(msg), session.SubmitOptions{})
	return err
}

// codeOf returns the code of the refusal err carries: the board's (a
// *wire.Error) or our own (a *wire.Refusal).
func codeOf(err error) wire.Code {
	var peer *wire.Error
	if errors.As(err, &peer) {
		return peer.Code
	}
	var own *wire.Refusal
	if errors.As(err, &own) {
		return own.Code
	}
	return 0
}

// signWithRoot issues a certificate from the installation's root key, for cases
// the CA would never produce (an expired certificate).
func (s *system) signWithRoot(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	rootKey, err := keys.ReadPrivateKey(s.path("data/ca/root-key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := keys.ReadCertificate(s.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return testcert.Issue(t, tmpl, root, pub, rootKey)
}

func TestBoardRefusals(t *testing.T) {
	s := startSystem(t, map[string]string{"board": "crl_refresh = \"1s\""})
	alice := s.enroll(t, "alice")
	bob := s.enroll(t, "bob")
	mallory := s.enroll(t, "mallory")

	other := startSystem(t, nil)
	stranger := other.enroll(t, "alice")

	// Expired, but inside the root's own validity (which began a minute before
	// the CA started), so that only the time is wrong.
	expired := s.signWithRoot(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "alice"},
		NotBefore:   time.Now().Add(-50 * time.Second),
		NotAfter:    time.Now().Add(-10 * time.Second),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, alice.key.Public())

	// Revoke mallory and wait for the board to pick up the new CRL.
	s.mustRun(nil, "revoke", "--sid", "mallory", "--reason", "keyCompromise")
	deadline := time.Now().Add(20 * time.Second)
	for s.board.Logged("CRL installed") < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}

	tests := []struct {
		name string
		sid  string
		cert *x509.Certificate
		key  crypto.Signer
		want wire.Code
	}{
		{"certificate from another CA", "alice", stranger.cert, stranger.key, wire.CodeUnknownCA},
		{"expired certificate", "alice", expired, alice.key, wire.CodeCertExpired},
		{"revoked certificate, after the CRL refresh", "mallory", mallory.cert, mallory.key, wire.CodeCertRevoked},
		{"certificate whose CN is another SID", "alice", bob.cert, bob.key, wire.CodeSIDMismatch},
		{"right certificate, wrong private key", "alice", alice.cert, bob.key, wire.CodeBadHelloSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := submitAs(t, s.board.Addr, tt.sid, tt.cert, tt.key, alice.root)
			if got := codeOf(err); got != tt.want {
				t.Errorf("got %v (code %d: %v) want %v (%d)", got, got, err, tt.want, tt.want)
			}
		})
	}
	// The legitimate student still gets through.
	if err := submitAs(t, s.board.Addr, "alice", alice.cert, alice.key, alice.root); err != nil {
		t.Errorf("alice after the refusals: %v", err)
	}
	// Nothing refused was stored.
	if subs := s.submissions(); len(subs) != 1 || subs[0].SID != "alice" {
		t.Errorf("submissions: got %+v, want alice's alone", subs)
	}

	// Through the student role: the revoked student exits non-zero with the
	// board's sentence.
	r := s.student(nil, "--ids", "mallory", "--data-dir", s.path("ids"))
	if r.code == 0 || !strings.Contains(r.stderr, "mallory: refused (cert-revoked)") || !strings.Contains(r.stderr, "was revoked") {
		t.Errorf("student mallory: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestRC4RefusedUnlessAllowed(t *testing.T) {
	rc4Only := "suites = [\"rc4-hmac-sha256\"]"
	t.Run("not allowed", func(t *testing.T) {
		s := startSystem(t, map[string]string{"student": rc4Only})
		r := s.student(nil, "--ids", "alice")
		if r.code == 0 || !strings.Contains(r.stderr, "alice: refused (suite-not-allowed)") {
			t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		s := startSystem(t, map[string]string{"student": rc4Only, "board": "allow_rc4 = true"})
		r := s.student(nil, "--ids", "alice")
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if s.board.Logged("RC4") == 0 {
			t.Error("the board did not warn about RC4")
		}
		if subs := s.submissions(); len(subs) != 1 || subs[0].Name != "message.txt" {
			t.Errorf("submissions: %+v", subs)
		}
	})
}

func TestStudentNamesTheFailedIDAfterDoingTheOthers(t *testing.T) {
	in := newInstall(t, map[string]string{"ca": "roster_file = \"roster.txt\""})
	if err := os.WriteFile(in.path("roster.txt"), []byte("alice\ncarol\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	r := s.student(nil, "--ids", "alice,bob,carol")
	if r.code == 0 {
		t.Fatalf("student exit 0 with bob off the roster\n%s", r.stdout)
	}
	for _, sid := range []string{"alice", "carol"} {
		if !regexp.MustCompile(`(?m)^` + sid + ` submitted: receipt`).MatchString(r.stdout) {
			t.Errorf("stdout lacks %s's receipt:\n%s", sid, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "1 of 3 IDs failed") || !strings.Contains(r.stderr, "bob: refused (not-on-roster)") {
		t.Errorf("stderr does not name bob and why:\n%s", r.stderr)
	}
	if subs := s.submissions(); len(subs) != 2 {
		t.Errorf("submissions: got %d want 2", len(subs))
	}
}

// writeReport writes size pseudo-random bytes to path and returns their SHA-256.
func writeReport(t *testing.T, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	rng := mrand.NewChaCha8([32]byte{7})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		rng.Read(buf[:n])
		f.Write(buf[:n])
		h.Write(buf[:n])
		left -= n
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// checkpointed returns the durable offset the board recorded for sid's partial
// upload, or 0.
func (s *system) checkpointed(sid string) int64 {
	dir := s.path("data/board/partial", hex.EncodeToString([]byte(sid)))
	matches, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		if i := bytes.Index(data, []byte("offset=")); i >= 0 {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(data[i+7:])), 10, 64)
			return n
		}
	}
	return 0
}

// startStudent starts the student role without waiting for it.
func (s *system) startStudent(args ...string) *daemon {
	cmd := exec.Command(bin, append([]string{"--config", s.config, "--role=student", "--ca-addr", s.ca.Addr, "--board-addr", s.board.Addr}, args...)...)
	p, err := proc.Launch("student", cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(p.Kill)
	return &daemon{Proc: p, t: s.t}
}

// waitCheckpoint waits until the board holds at least min bytes of sid's
// upload durably.
func (s *system) waitCheckpoint(sid string, min int64, student *daemon) {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for s.checkpointed(sid) < min {
		select {
		case <-student.Exited():
			s.t.Fatalf("the student finished before the board checkpointed %d bytes", min)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the board did not checkpoint %d bytes of %s's upload in 3 minutes", min, sid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var resumedLine = regexp.MustCompile(`resuming at byte (\d+) of (\d+)`)

func TestLargeReportSurvivesKilledStudentAndBoard(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB several times")
	}
	const size = 256 << 20
	s := startSystem(t, nil)
	report := s.path("report.bin")
	sum := writeReport(t, report, size)

	// Kill the student a quarter of the way in; the rerun resumes.
	student := s.startStudent("--ids", "alice", "--report", report)
	s.waitCheckpoint("alice", size/4, student)
	student.Kill()
	held := s.checkpointed("alice")
	r := s.student(nil, "--ids", "alice", "--report", report)
	if r.code != 0 {
		t.Fatalf("rerun after killing the student: exit %d\n%s", r.code, r.stderr)
	}
	m := resumedLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the rerun did not resume:\n%s", r.stdout)
	}
	off, _ := strconv.ParseInt(m[1], 10, 64)
	t.Logf("student killed with %d bytes checkpointed by the board; the rerun resumed at byte %d of %d", held, off, size)
	if off < held || off == 0 {
		t.Errorf("resumed at %d, want at least the %d the board held", off, held)
	}
	if rc := receiptLine.FindStringSubmatch(r.stdout); rc == nil || rc[3] != hex.EncodeToString(sum[:]) {
		t.Errorf("receipt does not carry the report's SHA-256:\n%s", r.stdout)
	}

	// Kill the board half-way through bob's upload: nothing is listed; after a
	// restart the retry succeeds.
	student = s.startStudent("--ids", "bob", "--report", report)
	s.waitCheckpoint("bob", size/2, student)
	s.board.Kill()
	select {
	case <-student.Exited():
		if student.ExitCode() == 0 {
			t.Error("the student exited 0 although the board died mid-upload")
		}
	case <-time.After(time.Minute):
		t.Fatal("the student did not notice the board's death within a minute")
	}
	for _, sub := range s.submissions() { // the board is down: read offline
		if sub.SID == "bob" {
			t.Errorf("a partial upload of bob is listed: %+v", sub)
		}
	}
	s.board = s.start("board", "--ca-addr", s.ca.Addr)
	r = s.student(nil, "--ids", "bob", "--report", report)
	if r.code != 0 {
		t.Fatalf("retry after the board restart: exit %d\n%s", r.code, r.stderr)
	}
	if m := resumedLine.FindStringSubmatch(r.stdout); m != nil {
		t.Logf("after the board restart, bob resumed at byte %s", m[1])
	}
	subs := s.submissions()
	if len(subs) != 2 {
		t.Fatalf("submissions: got %d want 2", len(subs))
	}
	for _, sub := range subs {
		if sub.Size != size || sub.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("submission %s of %s: size %d sha %s, want the report", sub.ID, sub.SID, sub.Size, sub.SHA256)
		}
		s.mustRun(nil, "submissions", "--verify", sub.ID, "--root", s.path("data", "ca", "root.pem"))
	}
}
