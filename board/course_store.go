package board

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"pkiboard/internal/sqlstore"
)

// schemaCourse is the migration of the course's own tables: the students'
// extensions, the active versions staff chose, and the audit of every staff
// action, which is append-only (its triggers refuse UPDATE and DELETE).
const schemaCourse = `
CREATE TABLE extensions (
	assignment TEXT NOT NULL CHECK (length(CAST(assignment AS BLOB)) BETWEEN 1 AND 64),
	sid        TEXT NOT NULL CHECK (length(CAST(sid AS BLOB)) BETWEEN 1 AND 255),
	until      TEXT NOT NULL CHECK (until GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	reason     TEXT NOT NULL CHECK (length(reason) > 0),
	granted_by TEXT NOT NULL CHECK (length(granted_by) > 0),
	granted_at TEXT NOT NULL CHECK (granted_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	PRIMARY KEY (assignment, sid)
) STRICT;
CREATE TABLE active (
	assignment TEXT    NOT NULL CHECK (length(CAST(assignment AS BLOB)) BETWEEN 1 AND 64),
	sid        TEXT    NOT NULL CHECK (length(CAST(sid AS BLOB)) BETWEEN 1 AND 255),
	version    INTEGER NOT NULL CHECK (version > 0),
	set_by     TEXT    NOT NULL CHECK (length(set_by) > 0),
	set_at     TEXT    NOT NULL CHECK (set_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	PRIMARY KEY (assignment, sid)
) STRICT;
CREATE TABLE audit (
	seq        INTEGER PRIMARY KEY CHECK (seq > 0),
	time       TEXT    NOT NULL CHECK (time GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	actor      TEXT    NOT NULL CHECK (length(actor) > 0),
	action     TEXT    NOT NULL CHECK (action IN ('extend', 'activate')),
	assignment TEXT    NOT NULL,
	sid        TEXT    NOT NULL,
	detail     TEXT    NOT NULL
) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
`

// Audit is one entry of the audit table: a staff action.
type Audit struct {
	Seq        int64
	Time       time.Time
	Actor      string // the OS user who ran the command, or its --as
	Action     string // "extend" or "activate"
	Assignment string
	SID        string
	Detail     string // what was done, for a person
}

// ErrNoVersion is returned by Activate for a version the student has not
// submitted.
var ErrNoVersion = errors.New("board: no such version")

// maxActor bounds an actor's name and an extension's reason.
const maxActor, maxReason = 255, 1024

func checkStaff(actor string) error {
	if actor == "" || len(actor) > maxActor || !utf8.ValidString(actor) || strings.ContainsFunc(actor, isControl) {
		return fmt.Errorf("board: the actor %q is not 1 to %d printable characters: give --as NAME", actor, maxActor)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Extend grants (or replaces) e, the extension of one student's
// assignment, and writes it to the audit table, in one durable transaction.
// GrantedAt is set from the store's clock if zero.
func (s *Store) Extend(e Extension) error {
	if err := checkStaff(e.GrantedBy); err != nil {
		return err
	}
	switch {
	case !assignmentID.MatchString(e.Assignment):
		return fmt.Errorf("board: %q is not an assignment id", e.Assignment)
	case e.SID == "" || len(e.SID) > 255:
		return fmt.Errorf("board: %q is not a SID", e.SID)
	case e.Reason == "" || len(e.Reason) > maxReason || !utf8.ValidString(e.Reason):
		return fmt.Errorf("board: give the extension a reason of 1 to %d bytes (--reason)", maxReason)
	case e.Until.UnixMilli() <= 0:
		return errors.New("board: the extension's end is not after 1970: give --until in RFC 3339 with a zone")
	}
	if e.GrantedAt.IsZero() {
		e.GrantedAt = s.now()
	}
	until, at := e.Until.UTC().Format(receivedLayout), e.GrantedAt.UTC().Format(receivedLayout)
	err := s.db.Update(func(tx *sql.Tx) error {
		var before sql.NullString
		err := tx.QueryRow(`SELECT until FROM extensions WHERE assignment = ? AND sid = ?`, e.Assignment, e.SID).Scan(&before)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO extensions (assignment, sid, until, reason, granted_by, granted_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (assignment, sid) DO UPDATE SET until = excluded.until, reason = excluded.reason,
				granted_by = excluded.granted_by, granted_at = excluded.granted_at`,
			e.Assignment, e.SID, until, e.Reason, e.GrantedBy, at); err != nil {
			return err
		}
		detail := "until " + until + ": " + e.Reason
		if before.Valid {
			detail += " (replaces the extension until " + before.String + ")"
		}
		return audit(tx, at, e.GrantedBy, "extend", e.Assignment, e.SID, detail)
	})
	if err != nil {
		return fmt.Errorf("board: extend %s for %s: %w", e.Assignment, e.SID, err)
	}
	return nil
}

// Activate marks version of sid's submissions to assignment as the one that
// counts, and writes it to the audit table, in one durable transaction. The
// mark holds until she submits again: a later version is active. The version
// must be one of hers (ErrNoVersion).
func (s *Store) Activate(assignment, sid string, version int, by string) error {
	if err := checkStaff(by); err != nil {
		return err
	}
	if version < 1 {
		return fmt.Errorf("%w: versions are numbered from 1", ErrNoVersion)
	}
	at := s.now().UTC().Format(receivedLayout)
	err := s.db.Update(func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM submissions WHERE assignment = ? AND sid = ? AND version = ?`,
			assignment, sid, version).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: %s has no version %d of %s (pkiboard submissions --assignment %s --sid %s --all-versions lists hers)",
				ErrNoVersion, sid, version, assignment, assignment, sid)
		}
		if _, err := tx.Exec(`INSERT INTO active (assignment, sid, version, set_by, set_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (assignment, sid) DO UPDATE SET version = excluded.version, set_by = excluded.set_by, set_at = excluded.set_at`,
			assignment, sid, version, by, at); err != nil {
			return err
		}
		return audit(tx, at, by, "activate", assignment, sid, fmt.Sprintf("version %d", version))
	})
	if err != nil {
		return fmt.Errorf("board: activate %s of %s: %w", assignment, sid, err)
	}
	return nil
}

// audit appends an entry to the audit table.
func audit(tx *sql.Tx, at, actor, action, assignment, sid, detail string) error {
	_, err := tx.Exec(`INSERT INTO audit (time, actor, action, assignment, sid, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		at, actor, action, assignment, sid, detail)
	return err
}

// Extension returns sid's extension of assignment, or nil.
func (s *Store) Extension(assignment, sid string) (*Extension, error) {
	var e *Extension
	err := s.db.View(func(tx *sql.Tx) error {
		list, err := extensions(tx, `WHERE assignment = ? AND sid = ?`, assignment, sid)
		if len(list) > 0 {
			e = &list[0]
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("board: extension of %s for %s: %w", assignment, sid, err)
	}
	return e, nil
}

// Extensions returns the extensions of assignment, by SID.
func (s *Store) Extensions(assignment string) (map[string]Extension, error) {
	out := map[string]Extension{}
	err := s.db.View(func(tx *sql.Tx) error {
		list, err := extensions(tx, `WHERE assignment = ?`, assignment)
		for _, e := range list {
			out[e.SID] = e
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("board: extensions of %s: %w", assignment, err)
	}
	return out, nil
}

func extensions(tx *sql.Tx, where string, args ...any) ([]Extension, error) {
	rows, err := tx.Query(`SELECT assignment, sid, until, reason, granted_by, granted_at FROM extensions `+where+` ORDER BY sid`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Extension
	for rows.Next() {
		var e Extension
		var until, at string
		if err := rows.Scan(&e.Assignment, &e.SID, &until, &e.Reason, &e.GrantedBy, &at); err != nil {
			return nil, err
		}
		if e.Until, err = time.Parse(receivedLayout, until); err != nil {
			return nil, err
		}
		if e.GrantedAt, err = time.Parse(receivedLayout, at); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AuditLog returns the audit table, oldest first.
func (s *Store) AuditLog() ([]Audit, error) {
	var out []Audit
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT seq, time, actor, action, assignment, sid, detail FROM audit ORDER BY seq`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a Audit
			var at string
			if err := rows.Scan(&a.Seq, &at, &a.Actor, &a.Action, &a.Assignment, &a.SID, &a.Detail); err != nil {
				return err
			}
			if a.Time, err = time.Parse(receivedLayout, at); err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("board: audit: %w", err)
	}
	return out, nil
}

// Standing returns what the board holds of sid's work on assignment: how
// many versions, their bytes, the active one, and her extension.
func (s *Store) Standing(assignment, sid string) (Standing, error) {
	var st Standing
	err := s.db.View(func(tx *sql.Tx) error {
		var latest int
		var last sql.NullString
		if err := tx.QueryRow(`SELECT count(*), coalesce(sum(size), 0), coalesce(max(version), 0), max(received)
			FROM submissions WHERE assignment = ? AND sid = ?`, assignment, sid).Scan(&st.Versions, &st.Stored, &latest, &last); err != nil {
			return err
		}
		act, err := activeMarks(tx, `WHERE assignment = ? AND sid = ?`, assignment, sid)
		if err != nil {
			return err
		}
		st.Active = activeVersion(latest, last.String, act[sid])
		list, err := extensions(tx, `WHERE assignment = ? AND sid = ?`, assignment, sid)
		if len(list) > 0 {
			st.Extension = &list[0]
		}
		return err
	})
	if err != nil {
		return Standing{}, fmt.Errorf("board: the standing of %s on %s: %w", sid, assignment, err)
	}
	return st, nil
}

// mark is a staff member's choice of a student's active version.
type mark struct {
	version int
	setAt   string // receivedLayout
}

// activeMarks returns the active table's marks of the rows where selects,
// by SID.
func activeMarks(tx *sql.Tx, where string, args ...any) (map[string]mark, error) {
	rows, err := tx.Query(`SELECT sid, version, set_at FROM active `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]mark{}
	for rows.Next() {
		var sid string
		var m mark
		if err := rows.Scan(&sid, &m.version, &m.setAt); err != nil {
			return nil, err
		}
		out[sid] = m
	}
	return out, rows.Err()
}

// activeVersion is the rule of the version that counts: the latest, unless
// staff marked another since it was received (a submission received after
// the mark is active again). latest is the latest version (0: none), and
// lastReceived its time of receipt in receivedLayout, whose string order is
// time order.
func activeVersion(latest int, lastReceived string, m mark) int {
	if latest == 0 {
		return 0
	}
	if m.version > 0 && m.version <= latest && lastReceived <= m.setAt {
		return m.version
	}
	return latest
}

// Submitted is a stored submission to an assignment, and whether it is the
// student's version that counts (the rule of Standing's Active).
type Submitted struct {
	Record
	Active bool
}

// Submissions returns the submissions to assignment (of sid only, if it is
// not ""), by SID and then version, each marked if it is the active one of
// its student.
func (s *Store) Submissions(assignment, sid string) ([]Submitted, error) {
	var out []Submitted
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT `+columns+` FROM submissions WHERE assignment = ? AND (? = '' OR sid = ?)
			ORDER BY sid, version`, assignment, sid, sid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				return err
			}
			out = append(out, Submitted{Record: r})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		marks, err := activeMarks(tx, `WHERE assignment = ? AND (? = '' OR sid = ?)`, assignment, sid, sid)
		if err != nil {
			return err
		}
		markActive(out, marks)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("board: the submissions to %s: %w", assignment, err)
	}
	return out, nil
}

// summaryColumns are the columns of a submission that its listings print:
// none of its evidence (certificates, transcript hash, statement, signature,
// receipt, terms), which is most of a row's bytes.
const summaryColumns = `s.id, s.sid, s.serial, s.name, s.size, s.sha256, s.suite, s.received, s.peer, s.resumed, s.file,
	s.assignment, s.original, s.version, s.due, s.lock, s.late_ms, s.extended, s.receipt_version`

// EachSummary calls fn with the submissions to assignment (of sid only, if
// it is not ""), by SID and then version, each marked if it is the active one
// of its student, as Submissions returns them, but without their evidence:
// the Records' StudentCertificate, Transcript, Statement, Signature,
// BoardCertificate, Receipt and Terms are zero (Get reads one submission
// whole). It reads them as it calls fn, one student's versions at a time, so
// that a listing of any size holds one student's rows; fn must not use the
// store (the read transaction is open), and its error stops the listing and
// is returned.
func (s *Store) EachSummary(assignment, sid string, fn func(*Submitted) error) error {
	err := s.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT `+summaryColumns+`, coalesce(a.version, 0), coalesce(a.set_at, '')
			FROM submissions s LEFT JOIN active a ON a.assignment = s.assignment AND a.sid = s.sid
			WHERE s.assignment = ? AND (? = '' OR s.sid = ?)
			ORDER BY s.sid, s.version`, assignment, sid, sid)
		if err != nil {
			return err
		}
		defer rows.Close()
		var group []Submitted // one student's versions
		var m mark
		flush := func() error {
			if len(group) == 0 {
				return nil
			}
			markActive(group, map[string]mark{group[0].SID: m})
			for i := range group {
				if err := fn(&group[i]); err != nil {
					return err
				}
			}
			group = group[:0]
			return nil
		}
		for rows.Next() {
			r, rm, err := scanSummary(rows)
			if err != nil {
				return err
			}
			if len(group) > 0 && group[0].SID != r.SID {
				if err := flush(); err != nil {
					return err
				}
			}
			group, m = append(group, Submitted{Record: r}), rm
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return flush()
	})
	if err != nil {
		return fmt.Errorf("board: the submissions to %s: %w", assignment, err)
	}
	return nil
}

// Summaries returns what EachSummary reads: the submissions to assignment
// (of sid only, if it is not ""), without their evidence.
func (s *Store) Summaries(assignment, sid string) ([]Submitted, error) {
	var out []Submitted
	err := s.EachSummary(assignment, sid, func(sub *Submitted) error {
		out = append(out, *sub)
		return nil
	})
	return out, err
}

// scanSummary reads a row of summaryColumns and the student's active mark.
func scanSummary(row interface{ Scan(...any) error }) (Record, mark, error) {
	var (
		r                     Record
		m                     mark
		serial, sum, received string
		peer                  sql.NullString
		version, due, lock    int64
		late, receiptVersion  int64
	)
	err := row.Scan(&r.ID, &r.SID, &serial, &r.Name, &r.Size, &sum, &r.Suite, &received, &peer, &r.Resumed, &r.File,
		&r.Assignment, &r.Original, &version, &due, &lock, &late, &r.Extended, &receiptVersion, &m.version, &m.setAt)
	if err != nil {
		return r, m, err
	}
	r.Version, r.Due, r.Lock, r.LateMS = uint32(version), uint64(due), uint64(lock), uint64(late)
	r.ReceiptVersion = uint16(receiptVersion)
	r.Peer = peer.String
	if r.Serial, err = hex.DecodeString(serial); err != nil {
		return r, m, fmt.Errorf("submission %s: serial %q: %w", r.ID, serial, err)
	}
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return r, m, fmt.Errorf("submission %s: sha256 %q is not 64 hex digits", r.ID, sum)
	} else {
		copy(r.SHA256[:], b)
	}
	if r.Received, err = time.Parse(receivedLayout, received); err != nil {
		return r, m, fmt.Errorf("submission %s: received: %w", r.ID, err)
	}
	return r, m, nil
}

// markActive sets Active on the version that counts of each student in
// subs, which are by SID and then version.
func markActive(subs []Submitted, marks map[string]mark) {
	for i := 0; i < len(subs); {
		j, last := i, ""
		for ; j < len(subs) && subs[j].SID == subs[i].SID; j++ {
			if r := subs[j].Received.UTC().Format(receivedLayout); r > last {
				last = r
			}
		}
		v := activeVersion(int(subs[j-1].Version), last, marks[subs[i].SID])
		for k := i; k < j; k++ {
			subs[k].Active = int(subs[k].Version) == v
		}
		i = j
	}
}

// CountedOf returns the version that counts of each student in subs (as
// Submissions returns them), for ProgressOf.
func CountedOf(subs []Submitted) []Counted {
	var out []Counted
	for _, s := range subs {
		if s.Active {
			out = append(out, Counted{SID: s.SID, Version: int(s.Version), Received: s.Received,
				Late: time.Duration(s.LateMS) * time.Millisecond})
		}
	}
	return out
}

// schemaConsoleAudit is migration 4: the audit table takes the staff
// console's actions (logins, and what staff do from the console) beside the
// commands' extend and activate. SQLite cannot change a CHECK constraint,
// so the table is rebuilt, its rows and append-only triggers kept.
const schemaConsoleAudit = `
CREATE TABLE audit_v4 (
	seq        INTEGER PRIMARY KEY CHECK (seq > 0),
	time       TEXT    NOT NULL CHECK (time GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z'),
	actor      TEXT    NOT NULL CHECK (length(actor) > 0),
	action     TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
	assignment TEXT    NOT NULL,
	sid        TEXT    NOT NULL,
	detail     TEXT    NOT NULL
) STRICT;
INSERT INTO audit_v4 SELECT seq, time, actor, action, assignment, sid, detail FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v4 RENAME TO audit;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
`

// AuditConsole records a staff action done from the console (package web's
// audit): actor is the name the session was opened under.
func (s *Store) AuditConsole(actor, action, detail string) error {
	if err := checkStaff(actor); err != nil {
		return err
	}
	at := s.now().UTC().Format(receivedLayout)
	return s.db.Update(func(tx *sql.Tx) error {
		return audit(tx, at, actor, action, "", "", detail)
	})
}

// DB returns the store's database, for the daemon's commit metrics
// (sqlstore.DB.Observe) and readiness (sqlstore.DB.CheckWritable).
func (s *Store) DB() *sqlstore.DB { return s.db }
