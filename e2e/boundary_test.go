package e2e

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBindFirst is finding 10: a second board on a port that is taken must
// fail before it enrolls — no certificate issued for it, nothing in its data
// directory — and a second CA must fail before it makes a root.
func TestBindFirst(t *testing.T) {
	s := startSystem(t, nil)
	certs := func() (boards int) {
		var list []struct {
			SID string `json:"sid"`
		}
		r := s.mustRun(nil, "certs", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("certs --json: %v\n%s", err, r.stdout)
		}
		for _, c := range list {
			if c.SID == "blackboard" {
				boards++
			}
		}
		return boards
	}
	if n := certs(); n != 1 {
		t.Fatalf("%d board certificates after the first board started, want 1", n)
	}

	dir := s.path("data", "board2")
	code, stderr := s.startFails(nil, "board", "--listen", s.board.Addr, "--data-dir", dir, "--ca-addr", s.ca.Addr)
	if code == 0 || !strings.Contains(stderr, "listen on "+s.board.Addr) {
		t.Errorf("a second board on %s: exit %d\n%s\nwant a failure to listen", s.board.Addr, code, stderr)
	}
	if n := certs(); n != 1 {
		t.Errorf("%d board certificates after a second board failed to bind, want still 1: it enrolled first", n)
	}
	for _, name := range []string{"key.pem", "cert.pem", "root.pem", "board.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("the second board left %s in its data directory", name)
		}
	}

	caDir := s.path("data", "ca2")
	code, stderr = s.startFails(nil, "ca", "--listen", s.ca.Addr, "--data-dir", caDir)
	if code == 0 || !strings.Contains(stderr, "listen on "+s.ca.Addr) {
		t.Errorf("a second CA on %s: exit %d\n%s\nwant a failure to listen", s.ca.Addr, code, stderr)
	}
	if _, err := os.Stat(filepath.Join(caDir, "root.pem")); err == nil {
		t.Error("the second CA made a root before it failed to bind")
	}
}

// TestUnsafeDataDirRefused is finding 7's data directory, end to end: a
// daemon refuses a data directory open to others, and says how to fix it.
func TestUnsafeDataDirRefused(t *testing.T) {
	in := newInstall(t, nil)
	dir := in.path("data", "ca")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	code, stderr := in.startFails(nil, "ca")
	if code == 0 || !strings.Contains(stderr, "has mode 0755") || !strings.Contains(stderr, `chmod 700 "`+dir+`"`) {
		t.Errorf("exit %d\n%s\nwant a refusal that says chmod 700 %s", code, stderr, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "root.pem")); err == nil {
		t.Error("the CA made a root in a data directory it should have refused")
	}
}

// TestDaemonLogFileAndContent checks the daemons' own log files (mode 0600,
// appended) and that the board logs a message's text only with
// board.log_content = true.
func TestDaemonLogFileAndContent(t *testing.T) {
	for _, logContent := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "log_content"}[logContent], func(t *testing.T) {
			extra := map[string]string{}
			if logContent {
				extra["board"] = "log_content = true"
			}
			in := newInstall(t, extra)
			s := &system{install: in}
			caLog, boardLog := in.path("ca.log"), in.path("board.log")
			s.ca = in.start("ca", "--log-file", caLog)
			s.board = in.start("board", "--ca-addr", s.ca.Addr, "--log-file", boardLog)
			if r := s.student(nil, "--ids", "1155000001"); r.code != 0 {
				t.Fatalf("student: exit %d\n%s", r.code, r.stderr)
			}
			s.board.stop()
			s.ca.stop()
			for _, path := range []string{caLog, boardLog} {
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if perm := info.Mode().Perm(); perm != 0o600 {
					t.Errorf("%s: mode %04o, want 0600", path, perm)
				}
				data, _ := os.ReadFile(path)
				if !strings.Contains(string(data), " listening") || !strings.Contains(string(data), " stopped") {
					t.Errorf("%s holds no whole run of the daemon:\n%s", path, data)
				}
			}
			data, _ := os.ReadFile(boardLog)
			text := "This is submission from 1155000001."
			if got := strings.Contains(string(data), text); got != logContent {
				t.Errorf("log_content %v: the board's log holds the message: %v", logContent, got)
			}
			if got := strings.Contains(s.board.Log(), text); got != logContent {
				t.Errorf("log_content %v: the board's standard error holds the message: %v", logContent, got)
			}
		})
	}
}

// TestPartialUploadsExpireAndShow is finding 8, end to end: a board removes
// at start the interrupted uploads older than board.partial_ttl, keeps the
// recent ones, and `stats` counts them.
func TestPartialUploadsExpireAndShow(t *testing.T) {
	in := newInstall(t, map[string]string{"board": `partial_ttl = "24h"`})
	s := &system{install: in}
	s.ca = in.start("ca")
	sum := strings.Repeat("ab", 32)
	write := func(sid, name string, size int, age time.Duration) string {
		dir := in.path("data", "board", "partial", hex.EncodeToString([]byte(sid)))
		if err := os.MkdirAll(dir, 0o700); err != nil { // data/board too, 0700 as a daemon wants it
			t.Fatal(err)
		}
		path := filepath.Join(dir, "."+sum+"."+name+".part")
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old := write("1155000001", "old.pdf", 300_000, 25*time.Hour)
	recent := write("1155000002", "recent.pdf", 200_000, 23*time.Hour)
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	if _, err := os.Stat(old); err == nil {
		t.Error("an upload interrupted 25 hours ago is still there with partial_ttl 24h")
	}
	if _, err := os.Stat(recent); err != nil {
		t.Errorf("an upload interrupted 23 hours ago is gone: %v", err)
	}
	if n := s.board.Logged("removed interrupted uploads older than board.partial_ttl"); n != 1 {
		t.Errorf("the board logged %d lines of expired uploads, want 1", n)
	}
	st := in.stats("board")
	if st.PartialUploads == nil || *st.PartialUploads != 1 || st.PartialBytes == nil || *st.PartialBytes != 200_000 {
		t.Errorf("stats: partial_uploads %v, partial_bytes %v; want 1 and 200000", st.PartialUploads, st.PartialBytes)
	}
	if ca := in.stats("ca"); ca.PartialUploads != nil {
		t.Error("the CA's stats have partial uploads")
	}
}
