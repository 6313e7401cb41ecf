package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/board"
	"pkiboard/session"
	"pkiboard/wire"
)

// TestHistoryRecoversReceipts runs the real processes: a student submits
// twice, deletes her receipt files, and `pkiboard history` writes them again,
// each byte for byte the file saved at submission, whose receipt is the
// board's stored row byte for byte; `pkiboard assignments` lists the lab's
// assignment with her two versions; and a SID that never enrolled is enrolled
// by the history and has none.
func TestHistoryRecoversReceipts(t *testing.T) {
	s := startSystem(t, nil)
	const sid = "1155000001"
	addrs := []string{"--ca-addr", s.ca.Addr, "--board-addr", s.board.Addr}
	saved := map[string][]byte{}
	for range 2 {
		r := s.student(nil, "--ids", sid)
		if r.code != 0 {
			t.Fatalf("student exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		m := receiptLine.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no receipt line:\n%s", r.stdout)
		}
		path := m[4]
		if !filepath.IsAbs(path) {
			path = filepath.Join(s.dir, path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		saved[path] = data
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	r := s.mustRun(nil, append([]string{"history", "--sid", sid}, addrs...)...)
	if !strings.Contains(r.stdout, "2 submissions") {
		t.Errorf("history says:\n%s", r.stdout)
	}
	a := s.mustRun(nil, append([]string{"assignments", "--sid", sid}, addrs...)...)
	if !strings.Contains(a.stdout, "lab") || !strings.Contains(a.stdout, "your submissions: 2, version 2 counts") {
		t.Errorf("assignments says:\n%s", a.stdout)
	}
	n := s.mustRun(nil, append([]string{"history", "--sid", "1155000009"}, addrs...)...)
	if !strings.Contains(n.stdout, "0 submissions") {
		t.Errorf("history of a new SID says:\n%s", n.stdout)
	}
	if code := s.board.stop(); code != 0 {
		t.Errorf("board exit after SIGTERM: got %d want 0", code)
	}
	st, err := board.Open(s.path("data/board"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for path, want := range saved {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s was not recovered: %v\n%s", path, err, r.stdout)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s recovered:\n%s\nsaved at submission:\n%s", path, got, want)
		}
		rf, err := session.ParseReceiptFile(got)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := st.Get(rf.Receipt.ID)
		if err != nil {
			t.Fatal(err)
		}
		body, err := wire.Marshal(rf.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body[1:], rec.Receipt) {
			t.Errorf("%s: its receipt is not the board's stored row byte for byte", path)
		}
		v := s.mustRun(nil, "verify-receipt", "--root", s.path("data", "ca", "root.pem"), "--board-name", "blackboard", path)
		if !strings.Contains(v.stdout, "verifies") {
			t.Errorf("verify-receipt %s: %q", path, v.stdout)
		}
	}
}
