package roles

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/internal/config"
)

// courseConfig returns a board configuration in a fresh data directory, with
// the assignments file given (none if "").
func courseConfig(t *testing.T, assignments string) *config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Board.DataDir = filepath.Join(dir, "board")
	if err := os.Mkdir(cfg.Board.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if assignments != "" {
		cfg.Board.AssignmentsFile = filepath.Join(dir, "assignments.toml")
		if err := os.WriteFile(cfg.Board.AssignmentsFile, []byte(assignments), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// TestExtendCommand: without a running board, extend opens the store itself;
// the grant is audited under --as; an unknown assignment or a bad time is
// refused with what to do.
func TestExtendCommand(t *testing.T) {
	cfg := courseConfig(t, "[[assignment]]\nid = \"hw1\"\nopens = 2026-11-01T00:00:00Z\ndue = 2026-11-08T00:00:00Z\nlock = 2026-11-10T00:00:00Z\n")
	ctx := context.Background()
	var out bytes.Buffer
	err := Extend(ctx, cfg, ExtendArgs{Assignment: "hw1", SID: "s1", Until: "2026-11-12T08:00:00+08:00", Reason: "medical", As: "alice"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "due 2026-11-12T08:00:00+08:00") || !strings.Contains(got, "locks at 2026-11-12T08:00:00+08:00") || !strings.Contains(got, "alice") {
		t.Errorf("extend printed %q", got)
	}
	for _, tc := range []struct {
		args ExtendArgs
		says string
	}{
		{ExtendArgs{Assignment: "hw9", SID: "s1", Until: "2026-11-12T00:00:00Z", Reason: "r", As: "a"}, "no assignment \"hw9\""},
		{ExtendArgs{Assignment: "hw1", SID: "s1", Until: "2026-11-12 00:00", Reason: "r", As: "a"}, "RFC 3339"},
		{ExtendArgs{Assignment: "hw1", SID: "s1", Until: "2026-10-12T00:00:00Z", Reason: "r", As: "a"}, "not after"},
		{ExtendArgs{Assignment: "hw1", SID: "s1", Until: "2026-11-12T00:00:00Z", As: "a"}, "reason"},
	} {
		if err := Extend(ctx, cfg, tc.args, &out); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: %v, want it to say %q", tc.args, err, tc.says)
		}
	}
	st, err := board.OpenReadOnly(cfg.Board.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, err := st.AuditLog()
	if err != nil || len(log) != 1 {
		t.Fatalf("audit: %v, %v; want the one grant", log, err)
	}
	if a := log[0]; a.Actor != "alice" || a.Action != "extend" || a.SID != "s1" || a.Assignment != "hw1" {
		t.Errorf("audit entry %+v", a)
	}
	e, err := st.Extension("hw1", "s1")
	if err != nil || e == nil || !e.Until.Equal(time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("stored extension %+v, %v", e, err)
	}
}

// TestExtendLab: without an assignments file, the one assignment is "lab".
func TestExtendLab(t *testing.T) {
	cfg := courseConfig(t, "")
	var out bytes.Buffer
	if err := Extend(context.Background(), cfg, ExtendArgs{Assignment: "hw1", SID: "s1", Until: "2026-11-12T00:00:00Z", Reason: "r", As: "a"}, &out); err == nil || !strings.Contains(err.Error(), "lab") {
		t.Errorf("extend of hw1 on a lab board: %v", err)
	}
	if err := Extend(context.Background(), cfg, ExtendArgs{Assignment: "lab", SID: "s1", Until: "2026-11-12T00:00:00Z", Reason: "r", As: "a"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no lock time") {
		t.Errorf("printed %q", out.String())
	}
}

func TestStaffName(t *testing.T) {
	if n, err := staffName("bob"); err != nil || n != "bob" {
		t.Errorf("--as bob: %q, %v", n, err)
	}
	if n, err := staffName(""); err != nil || n == "" {
		t.Errorf("the OS user: %q, %v", n, err)
	}
}

// TestBoardRefusesInvalidAssignments: an invalid assignments file stops the
// board at start, with the line and what to fix, before it binds anything.
func TestBoardRefusesInvalidAssignments(t *testing.T) {
	cfg := courseConfig(t, "[[assignment]]\nid = \"hw1\"\ndue = 2026-11-08T00:00:00Z\nlock = 2026-11-07T00:00:00Z\n")
	cfg.Board.Listen = "127.0.0.1:0"
	err := RunBoard(context.Background(), cfg, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "before due") {
		t.Fatalf("RunBoard: %v, want a refusal naming line 4", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Board.DataDir, board.DBFile)); err == nil {
		t.Error("the board created its database before refusing")
	}
}
