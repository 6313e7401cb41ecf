package roles

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/internal/config"
	"pkiboard/session"
	"pkiboard/wire"
)

// serveBoard runs the board's handler on every connection to a listener on
// 127.0.0.1 until the test ends, with the store in dir; it returns the
// listener's address and the store.
func serveBoard(t *testing.T, p *stepPKI, dir string) (string, *board.Store) {
	t.Helper()
	st, err := board.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	status := p.status(t, 1, false)
	h := &boardHandler{
		store:   st,
		limits:  config.Default().Board.Limits,
		uploads: board.UploadLimits{MaxSize: 1 << 20},
		log:     zap.NewNop(),
	}
	h.session.Store(&session.ServerConfig{
		Certificate: p.board, Key: p.boardK, Root: p.root,
		Status: func() []byte { return status }, Replays: session.NewReplayCache(0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		st.Close()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				h.handle(context.Background(), c, testTracked(t, c))
			})
		}
	})
	return ln.Addr().String(), st
}

// TestHistoryRecoversDeletedReceipt submits twice (once to the lab, once a
// report with a name that is not safe), deletes the receipt files the
// student saved, and recovers them with the history: each recovered file is
// byte for byte the one saved at submission, and the receipt it holds is,
// byte for byte, the one the board stored in its row.
func TestHistoryRecoversDeletedReceipt(t *testing.T) {
	p := newStepPKI(t)
	addr, store := serveBoard(t, p, t.TempDir())
	dataDir := t.TempDir()
	sidDir := filepath.Join(dataDir, stepSID)
	report := filepath.Join(t.TempDir(), "Lab Report (final).txt")
	if err := os.WriteFile(report, []byte("my report\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newStudent := func(c *content) *student {
		return &student{
			cfg:     &config.StudentConfig{BoardAddr: addr, BoardName: "blackboard", DataDir: dataDir, Timeout: config.Duration(10 * time.Second)},
			log:     zap.NewNop(),
			out:     &lockedWriter{w: io.Discard},
			content: c,
			suites:  []uint16{session.SuiteAES256CTRHMACSHA256},
			seen:    newCRLSeen(dataDir),
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reportContent, err := prepareContent(StudentOptions{Report: report}, board.LabAssignment)
	if err != nil {
		t.Fatal(err)
	}
	defer reportContent.report.Close()
	saved := map[string][]byte{} // receipt file name → its bytes as saved at submission
	for _, c := range []*content{{original: messageFileName, name: messageFileName}, reportContent} {
		sub, err := newStudent(c).submit(ctx, ctx, stepSID, p.student)
		if err != nil {
			t.Fatal(err)
		}
		path, err := saveReceipt(sidDir, sub.receipt, sub.board)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		saved[filepath.Base(path)] = data
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}

	var out bytes.Buffer
	st := newStudent(nil)
	st.out = &lockedWriter{w: &out}
	opts := HistoryOptions{SID: stepSID, OutDir: filepath.Join(sidDir, "receipts"), Out: &out}
	if err := st.history(ctx, p.student, opts); err != nil {
		t.Fatalf("history: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "2 submissions") {
		t.Errorf("history says:\n%s", out.String())
	}
	for name, want := range saved {
		got, err := os.ReadFile(filepath.Join(sidDir, "receipts", name))
		if err != nil {
			t.Fatalf("%s was not recovered: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s recovered:\n%s\nsaved at submission:\n%s", name, got, want)
		}
		rf, err := session.ParseReceiptFile(got)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := store.Get(rf.Receipt.ID)
		if err != nil {
			t.Fatal(err)
		}
		body, err := wire.Marshal(rf.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body[1:], rec.Receipt) {
			t.Errorf("%s: the receipt in the recovered file is not the board's stored row byte for byte", name)
		}
		if err := rf.Verify(p.root, time.Now()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Run again: the files are there, identical, and stay as they are.
	out.Reset()
	if err := st.history(ctx, p.student, opts); err != nil || strings.Count(out.String(), "already there, identical") != 2 {
		t.Errorf("history again: %v\n%s", err, out.String())
	}
	// A file of the same name with other content (another board's receipt
	// of the same id) is kept; the recovered one goes beside it.
	var first string
	for name := range saved {
		first = name
	}
	other := filepath.Join(sidDir, "receipts", first)
	if err := os.WriteFile(other, []byte("another receipt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := st.history(ctx, p.student, opts); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(other); string(data) != "another receipt\n" {
		t.Error("history overwrote a receipt file with other content")
	}
	beside, _ := filepath.Glob(filepath.Join(sidDir, "receipts", strings.TrimSuffix(first, ".json")+"-board-*.json"))
	if len(beside) != 1 {
		t.Fatalf("the recovered receipt beside the other file: %v", beside)
	}
	if data, _ := os.ReadFile(beside[0]); !bytes.Equal(data, saved[first]) {
		t.Error("the receipt written beside is not the one saved at submission")
	}

	// Only one assignment's.
	out.Reset()
	opts.Assignment, opts.OutDir = "hw1", t.TempDir()
	if err := st.history(ctx, p.student, opts); err != nil || !strings.Contains(out.String(), `0 submissions to "hw1"`) {
		t.Errorf("history of hw1: %v\n%s", err, out.String())
	}
}

// TestAssignmentsOfTheLab checks what a board without assignments lists:
// the lab's, with the student's versions of it.
func TestAssignmentsOfTheLab(t *testing.T) {
	p := newStepPKI(t)
	addr, _ := serveBoard(t, p, t.TempDir())
	dataDir := t.TempDir()
	var out bytes.Buffer
	st := &student{
		cfg:     &config.StudentConfig{BoardAddr: addr, BoardName: "blackboard", DataDir: dataDir, Timeout: config.Duration(10 * time.Second)},
		log:     zap.NewNop(),
		out:     &lockedWriter{w: &out},
		content: &content{original: messageFileName, name: messageFileName},
		suites:  []uint16{session.SuiteAES256CTRHMACSHA256},
		seen:    newCRLSeen(dataDir),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := st.submit(ctx, ctx, stepSID, p.student); err != nil {
		t.Fatal(err)
	}
	var items []wire.AssignmentItem
	err := st.withSession(ctx, stepSID, p.student, func(sc *session.Conn) error {
		var err error
		items, err = sc.Assignments()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != board.LabAssignment || items[0].Versions != 1 || items[0].Active != 1 {
		t.Fatalf("assignments: %+v", items)
	}
	if line := assignmentLine(items[0]); !strings.Contains(line, "lab") || !strings.Contains(line, "your submissions: 1") {
		t.Errorf("the line says %q", line)
	}
}
