package board

import (
	"time"

	"pkiboard/session"
	"pkiboard/wire"
)

// LabAssignment is the id of the lab's implicit assignment, the one a board
// configured without assignments serves (PROTOCOL.md §5.4): no times, any
// file.
const LabAssignment = "lab"

// Lab is the course of a board without assignments: the lab's one assignment,
// LabAssignment, with no opening, due or lock time, accepting any file up to
// MaxSize bytes, with no limit of versions or storage.
type Lab struct {
	Store   *Store
	MaxSize int64 // board.max_size
}

var _ session.Course = (*Lab)(nil)

// Terms accepts any submission to the lab's assignment and refuses any other
// assignment unknown-assignment.
func (l *Lab) Terms(_ string, req *wire.SubmitRequest, _ time.Time) (*wire.Terms, error) {
	if req.Assignment != LabAssignment {
		return nil, wire.Refusef(wire.CodeUnknownAssignment,
			"this board serves no assignment %q, only %q: check --assignment", req.Assignment, LabAssignment)
	}
	if req.Size > uint64(l.MaxSize) {
		return nil, wire.Refusef(wire.CodeFileTooLarge,
			"the file is %d bytes; this board accepts at most %d: submit a smaller file", req.Size, l.MaxSize)
	}
	return &wire.Terms{Assignment: LabAssignment, MaxSize: uint64(l.MaxSize)}, nil
}

// History returns sid's stored receipts, newest first.
func (l *Lab) History(sid, assignment string) ([]wire.HistoryItem, error) {
	return l.Store.History(sid, assignment, wire.MaxHistoryItems)
}

// Assignments returns the lab's assignment, with sid's versions of it.
func (l *Lab) Assignments(sid string, _ time.Time) ([]wire.AssignmentItem, error) {
	n, latest, _, err := l.Store.Usage(sid, LabAssignment)
	if err != nil {
		return nil, err
	}
	return []wire.AssignmentItem{{ID: LabAssignment, Title: "the lab", MaxSize: uint64(l.MaxSize),
		Versions: uint32(n), Active: latest}}, nil
}
