package roles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/durable"
	"pkiboard/internal/logging"
	"pkiboard/session"
	"pkiboard/wire"
)

// HistoryOptions configure RunHistory.
type HistoryOptions struct {
	SID string
	// Assignment lists only the submissions to this assignment; "" lists
	// all of them.
	Assignment string
	// OutDir is where the receipt files are written; "" for the SID's
	// receipts directory in student.data_dir, where the student role saves
	// them.
	OutDir string
	Out    io.Writer // where the list is printed
}

// AssignmentsOptions configure RunAssignments.
type AssignmentsOptions struct {
	SID string
	Out io.Writer // where the list is printed
}

// newStudentFor returns the student role's state for one SID, as RunStudent
// makes it: its token (for an enrollment, if one is needed), its trust
// anchor, the CRL numbers it has seen.
func newStudentFor(cfg *config.Config, log *zap.Logger, sid string, out io.Writer) (*student, error) {
	if !sidPath.MatchString(sid) {
		return nil, fmt.Errorf("%q is not a usable student ID (letters, digits, '_' and '-', at most 64, starting with a letter or digit)", sid)
	}
	s := &cfg.Student
	tokens, err := loadTokens(s.TokenFile, []string{sid})
	if err != nil {
		return nil, err
	}
	return &student{cfg: s, log: log, out: &lockedWriter{w: out}, tokens: tokens, suites: s.Suites.IDs(),
		trustAnchor: &ca.Anchor{Fingerprint: s.RootFingerprint, Saved: filepath.Join(s.DataDir, ca.RootFile)},
		seen:        newCRLSeen(s.DataDir)}, nil
}

// withSession runs fn in an authenticated session of sid with the board, as
// id, or — if id is nil — with her certificate reused, renewed or enrolled
// as the student role does it; the board's certificate and status checked.
// A busy board is tried again.
func (st *student) withSession(ctx context.Context, sid string, id *studentID, fn func(*session.Conn) error) error {
	setupCtx, cancel := context.WithTimeout(ctx, st.cfg.Timeout.D())
	defer cancel()
	if id == nil {
		var err error
		if id, err = st.identity(setupCtx, sid, filepath.Join(st.cfg.DataDir, sid)); err != nil {
			return err
		}
	}
	return retryBusy(setupCtx, st.log, sid, "the board", func() error {
		sc, done, err := st.session(ctx, setupCtx, sid, id)
		if err != nil {
			return err
		}
		defer done()
		return fn(sc)
	})
}

// RunHistory asks the board for the student's submissions (PROTOCOL.md §5.4,
// HistoryRequest), checks every receipt as the student checks the one of a
// submission, and writes each that verifies as its receipt file — the very
// file the student saved when she submitted, byte for byte, since both are
// made of the receipt the board signed — into opts.OutDir, printing one
// line per submission. A file already there with other content (a receipt of
// the same id from another board) is kept, and the receipt written beside
// it. It fails, after writing the others, if any receipt is not evidence.
func RunHistory(ctx context.Context, cfg *config.Config, log *zap.Logger, opts HistoryOptions) error {
	st, err := newStudentFor(cfg, log, opts.SID, opts.Out)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if opts.OutDir == "" {
		opts.OutDir = filepath.Join(cfg.Student.DataDir, opts.SID, "receipts")
	}
	return st.history(ctx, nil, opts)
}

// history is RunHistory's work, in a session as id (nil: her saved,
// renewed or enrolled certificate).
func (st *student) history(ctx context.Context, id *studentID, opts HistoryOptions) error {
	log, dir := st.log, opts.OutDir
	var entries []session.HistoryEntry
	err := st.withSession(ctx, opts.SID, id, func(sc *session.Conn) error {
		var err error
		entries, err = sc.History(opts.Assignment)
		return err
	})
	if err != nil {
		return fmt.Errorf("history of %s: %s", opts.SID, studentMessage(err))
	}
	what := "submissions"
	if opts.Assignment != "" {
		what = fmt.Sprintf("submissions to %q", opts.Assignment)
	}
	fmt.Fprintf(opts.Out, "%s: %d %s on the board, newest first\n", opts.SID, len(entries), what)
	var bad []string
	for i, e := range entries {
		line, path, err := writeHistoryEntry(dir, e)
		if err != nil {
			bad = append(bad, fmt.Sprintf("receipt %d: %v", i+1, err))
			fmt.Fprintf(opts.Out, "  receipt %d is NOT evidence: %v\n", i+1, err)
			continue
		}
		logging.Step(log, 6, "receipt recovered from the board", logging.SID(opts.SID), zap.String("file", path))
		fmt.Fprintf(opts.Out, "  %s\n    saved as %s\n", line, path)
	}
	if len(bad) > 0 {
		return fmt.Errorf("history of %s: %d of %d receipts are not evidence (tell the course staff):\n  %s",
			opts.SID, len(bad), len(entries), strings.Join(bad, "\n  "))
	}
	return nil
}

// writeHistoryEntry writes a checked receipt's file into dir as <id>.json
// and returns what it says and where it is.
func writeHistoryEntry(dir string, e session.HistoryEntry) (line, path string, err error) {
	if e.Err != nil {
		return "", "", e.Err
	}
	data, err := e.ReceiptFile()
	if err != nil {
		return "", "", err
	}
	rf, err := session.ParseReceiptFile(data)
	if err != nil {
		return "", "", err
	}
	id := rf.Fields().ID
	if !sidPath.MatchString(id) {
		return "", "", fmt.Errorf("the board's receipt id %q cannot name a file", id)
	}
	path = filepath.Join(dir, id+".json")
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		return "receipt " + id + ": " + receiptSays(rf) + " (the file was already there, identical)", path, nil
	case err == nil:
		sum := sha256.Sum256(e.Item.Certificate)
		path = filepath.Join(dir, fmt.Sprintf("%s-board-%x.json", id, sum[:4]))
	case !errors.Is(err, os.ErrNotExist):
		return "", "", err
	}
	if err := durable.WriteFile(path, data, 0o644); err != nil {
		return "", "", err
	}
	return "receipt " + id + ": " + receiptSays(rf), path, nil
}

// RunAssignments asks the board for the assignments as they are for the
// student (PROTOCOL.md §5.4, AssignmentsRequest) and prints them.
func RunAssignments(ctx context.Context, cfg *config.Config, log *zap.Logger, opts AssignmentsOptions) error {
	st, err := newStudentFor(cfg, log, opts.SID, opts.Out)
	if err != nil {
		return fmt.Errorf("assignments: %w", err)
	}
	var items []wire.AssignmentItem
	err = st.withSession(ctx, opts.SID, nil, func(sc *session.Conn) error {
		var err error
		items, err = sc.Assignments()
		return err
	})
	if err != nil {
		return fmt.Errorf("assignments for %s: %s", opts.SID, studentMessage(err))
	}
	fmt.Fprintf(opts.Out, "%s: %d assignments\n", opts.SID, len(items))
	for _, it := range items {
		fmt.Fprintf(opts.Out, "%s\n", assignmentLine(it))
	}
	return nil
}

// assignmentLine says what an assignment is for the student.
func assignmentLine(it wire.AssignmentItem) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s", it.ID)
	if it.Title != "" {
		fmt.Fprintf(&b, " (%s)", it.Title)
	}
	var times []string
	for _, t := range []struct {
		name string
		ms   uint64
	}{{"opens", it.Opens}, {"due", it.Due}, {"locks", it.Lock}} {
		if t.ms != 0 {
			times = append(times, t.name+" "+msTime(t.ms))
		}
	}
	if len(times) == 0 {
		times = append(times, "no times")
	}
	if it.Extended {
		times = append(times, "your extension applies")
	}
	fmt.Fprintf(&b, ": %s; files up to %d bytes", strings.Join(times, ", "), it.MaxSize)
	if it.Patterns != "" {
		fmt.Fprintf(&b, " matching %s", it.Patterns)
	}
	fmt.Fprintf(&b, "; your submissions: %d", it.Versions)
	if it.Active != 0 {
		fmt.Fprintf(&b, ", version %d counts", it.Active)
	}
	return b.String()
}
