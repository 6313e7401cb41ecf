package board

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"pkiboard/session"
	"pkiboard/wire"
)

// Extension is a student's extension of an assignment: her due time becomes
// Until, and her lock time the later of the assignment's and Until.
type Extension struct {
	Assignment string
	SID        string
	Until      time.Time
	Reason     string
	GrantedBy  string
	GrantedAt  time.Time
}

// Standing is what the board holds of one student's work on one assignment,
// which the terms of her next submission depend on.
type Standing struct {
	Versions  int        // her submissions to it so far
	Stored    int64      // their bytes together
	Active    int        // the version that counts; 0 for none
	Extension *Extension // nil for none
}

// Terms are the terms of one student's submission to an assignment (the
// Terms message of PROTOCOL.md §5.4): the times that apply to her, after any
// extension, each zero for none.
type Terms struct {
	Assignment string
	Opens      time.Time
	Due        time.Time // her extension's end, if she has one, else the assignment's
	Lock       time.Time // the later of the assignment's and her extension's end; zero for none
	Extended   bool
	MaxSize    int64
}

// TermsFor returns the terms of a with ext (nil for none) applied.
func (a *Assignment) TermsFor(ext *Extension) Terms {
	t := Terms{Assignment: a.ID, Opens: a.Opens, Due: a.Due, Lock: a.Lock, MaxSize: a.MaxSize}
	if ext != nil {
		t.Extended = true
		t.Due = ext.Until
		if !t.Lock.IsZero() && t.Lock.Before(ext.Until) {
			t.Lock = ext.Until
		}
	}
	return t
}

// Decide is the board's decision on a submission request (PROTOCOL.md §5.4)
// for assignment a (nil: the board serves none of that id), by a student
// whose standing is st, of a file whose original name is original and whose
// size is size, at now. The checks run in the order of §5.4, and the first
// that fails is returned as a *wire.Refusal whose sentence says what to do:
// the assignment exists (unknown-assignment), has opened (not-open), is not
// locked for her (closed), accepts the name (file-not-accepted), the file is
// not empty unless allowed (empty-file), not larger than the assignment's
// limit (file-too-large), she has versions left (too-many-versions), and
// her storage has room (quota-exceeded). id is the requested id.
func Decide(a *Assignment, id string, st Standing, original string, size int64, now time.Time) (Terms, error) {
	if a == nil {
		return Terms{}, wire.Refusef(wire.CodeUnknownAssignment, "this board serves no assignment %q: check the id (pkiboard assignments lists them)", id)
	}
	t := a.TermsFor(st.Extension)
	switch {
	case !t.Opens.IsZero() && now.Before(t.Opens):
		return t, wire.Refusef(wire.CodeNotOpen, "assignment %q opens at %s, in %s: submit then", a.ID, rfc3339(t.Opens), t.Opens.Sub(now).Round(time.Second))
	case t.Locked(now):
		return t, closed(t, a.ID)
	case !a.Accepts(original):
		return t, wire.Refusef(wire.CodeFileNotAccepted, "assignment %q accepts files named %s; %q matches none: submit the right file, or rename it", a.ID, strings.Join(a.Accept, ", "), original)
	case size == 0 && !a.AllowEmpty:
		return t, wire.Refusef(wire.CodeEmptyFile, "the file %q is empty and assignment %q does not accept empty files: submit your work", original, a.ID)
	case size > a.MaxSize:
		return t, wire.Refusef(wire.CodeFileTooLarge, "the file %q of %d bytes is larger than assignment %q accepts, %d bytes: submit a smaller file", original, size, a.ID, a.MaxSize)
	}
	return t, a.room(st.Versions, st.Stored, size)
}

// room refuses one more submission of size bytes by a student who has made
// versions submissions holding stored bytes: too-many-versions past
// MaxVersions, quota-exceeded past Quota.
func (a *Assignment) room(versions int, stored, size int64) error {
	switch {
	case a.MaxVersions > 0 && versions >= a.MaxVersions:
		return wire.Refusef(wire.CodeTooManyVersions, "you have made %d submissions to assignment %q, its maximum: ask the course staff if one must be replaced", versions, a.ID)
	case a.Quota > 0 && stored+size > a.Quota:
		return wire.Refusef(wire.CodeQuotaExceeded, "your %d submissions to assignment %q hold %d bytes; %d more would pass its storage of %d bytes per student: ask the course staff", versions, a.ID, stored, size, a.Quota)
	}
	return nil
}

// Locked reports whether a submission received at now is refused: at or
// after the lock time.
func (t Terms) Locked(now time.Time) bool { return !t.Lock.IsZero() && !now.Before(t.Lock) }

// Late returns how late a submission received at received is against the
// terms' due time, to the millisecond: 0 when there is no due time or it is
// received at or before it.
func (t Terms) Late(received time.Time) time.Duration {
	if t.Due.IsZero() {
		return 0
	}
	late := received.Truncate(time.Millisecond).Sub(t.Due.Truncate(time.Millisecond))
	if late <= 0 {
		return 0
	}
	return late
}

// Judge is the board's judgement of a submission at the instant that counts
// (PROTOCOL.md §5.4): received, when it reads SubmitEnd with all the content.
// One received at or after the lock time is refused closed (nothing of it is
// kept); otherwise it returns how late it is (0: on time). The terms are those
// the board announced in the session: an upload resumed across the due time
// is judged when it ends.
func (t Terms) Judge(received time.Time) (time.Duration, error) {
	if t.Locked(received) {
		return 0, closed(t, t.Assignment)
	}
	return t.Late(received), nil
}

// closed is the refusal of a submission at or after its lock time.
func closed(t Terms, id string) error {
	whose := "its lock time"
	if t.Extended && t.Lock.Equal(t.Due) {
		whose = "the end of your extension"
	}
	return wire.Refusef(wire.CodeClosed, "assignment %q closed at %s (%s): the board accepts no more submissions to it; ask the course staff if you have a reason", id, rfc3339(t.Lock), whose)
}

// millis returns t in milliseconds since 1970 as the wire carries it, 0 for
// the zero time (none).
func millis(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

// String describes the terms for a log line.
func (t Terms) String() string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return rfc3339(t)
	}
	return fmt.Sprintf("%s opens %s due %s lock %s extended %t", t.Assignment, f(t.Opens), f(t.Due), f(t.Lock), t.Extended)
}

// Message returns the terms as the board announces them (the Terms message).
func (t Terms) Message() *wire.Terms {
	return &wire.Terms{
		Assignment: t.Assignment, Opens: millis(t.Opens), Due: millis(t.Due), Lock: millis(t.Lock),
		Extended: t.Extended, MaxSize: uint64(t.MaxSize),
	}
}

// Course is the board's course: the assignments in force (the assignments
// file, read again when it changes, or the lab) and what its store holds of
// each student's work. It is the session's [session.Course].
type Course struct {
	store       *Store
	assignments func() []Assignment
}

var _ session.Course = (*Course)(nil)

// NewCourse returns the course of st whose assignments are those
// assignments returns at each request (AssignmentsFile.Current, or a list of
// one Lab). It has st's Commit check the assignment's versions and quota
// again (Admit), under its lock of the student's assignment.
func NewCourse(st *Store, assignments func() []Assignment) *Course {
	c := &Course{store: st, assignments: assignments}
	admit := c.Admit
	st.admit.Store(&admit)
	return c
}

// Admit is the check of max_versions and quota at the commit: Terms checked
// them at the request, but two sessions of one student may both have passed
// there; the commits of one student to one assignment are serialized, and
// the second is refused here with the same code. versions and stored are her
// submissions to assignment stored so far and their bytes; size is the new
// one's. An assignment removed since the request is admitted (its terms
// were announced).
func (c *Course) Admit(assignment string, versions int, stored, size int64) error {
	a := find(c.assignments(), assignment)
	if a == nil {
		return nil
	}
	return a.room(versions, stored, size)
}

// Terms decides student sid's SubmitRequest at now (Decide, PROTOCOL.md
// §5.4), with her extension and her versions, and returns the terms that
// apply to her.
func (c *Course) Terms(sid string, req *wire.SubmitRequest, now time.Time) (*wire.Terms, error) {
	a := find(c.assignments(), req.Assignment)
	var st Standing
	if a != nil {
		var err error
		if st, err = c.store.Standing(a.ID, sid); err != nil {
			return nil, err
		}
	}
	size := int64(min(req.Size, 1<<62))
	t, err := Decide(a, req.Assignment, st, req.Original, size, now)
	if err != nil {
		return nil, err
	}
	return t.Message(), nil
}

// History returns the receipts stored for sid, of assignment (every
// assignment if ""), newest first, as the board signed them.
func (c *Course) History(sid, assignment string) ([]wire.HistoryItem, error) {
	return c.store.History(sid, assignment, wire.MaxHistoryItems)
}

// Assignments returns the assignments as sid sees them at now (PROTOCOL.md
// §5.4, Assignments): those open now or opening later, and those locked for
// her that hold a submission of hers, with the terms that apply to her, her
// versions and the active one; by due time (those without one last), then
// id. It keeps as many as one record carries.
func (c *Course) Assignments(sid string, now time.Time) ([]wire.AssignmentItem, error) {
	list := c.assignments()
	items := make([]wire.AssignmentItem, 0, len(list))
	for i := range list {
		a := &list[i]
		st, err := c.store.Standing(a.ID, sid)
		if err != nil {
			return nil, err
		}
		t := a.TermsFor(st.Extension)
		if t.Locked(now) && st.Versions == 0 {
			continue
		}
		items = append(items, wire.AssignmentItem{
			ID: a.ID, Title: a.Title, Opens: millis(t.Opens), Due: millis(t.Due), Lock: millis(t.Lock),
			Extended: t.Extended, MaxSize: uint64(a.MaxSize), Patterns: a.Patterns(),
			Versions: uint32(st.Versions), Active: uint32(st.Active),
		})
	}
	slices.SortStableFunc(items, func(x, y wire.AssignmentItem) int {
		if (x.Due == 0) != (y.Due == 0) {
			if x.Due == 0 {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(x.Due, y.Due); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	// One record: a list8 within MaxRecordBody.
	size := 1 + 1
	for i, it := range items {
		size += 1 + len(it.ID) + 2 + len(it.Title) + 8*3 + 1 + 8 + 2 + len(it.Patterns) + 4 + 4
		if i == 255 || size > wire.MaxRecordBody {
			return items[:i], nil
		}
	}
	return items, nil
}
