package roles

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"pkiboard/board"
	"pkiboard/internal/config"
	"pkiboard/internal/roster"
)

// Output formats of the course's listings.
const (
	FormatTable = ""
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// AssignmentListOptions are the options of `pkiboard submissions
// --assignment A`.
type AssignmentListOptions struct {
	Assignment  string
	SID         string // only this student's; "" for all
	AllVersions bool   // every version, not only the active one
	LateOnly    bool   // only the late ones
	Format      string // FormatTable, FormatJSON or FormatCSV
}

// AssignmentSubmission is one line of `pkiboard submissions --assignment`.
type AssignmentSubmission struct {
	ID       string     `json:"id"`
	SID      string     `json:"sid"`
	Version  uint32     `json:"version"`
	Active   bool       `json:"active"` // the version that counts
	Original string     `json:"original"`
	Name     string     `json:"name"` // the stored (safe) name
	Size     int64      `json:"size"`
	SHA256   string     `json:"sha256"`
	Received time.Time  `json:"received"`
	Due      *time.Time `json:"due"` // the due time that applied to it; null for none
	LateMS   uint64     `json:"late_ms"`
	Extended bool       `json:"extended"` // her extension applied to it
}

// assignmentSubmission is the line of s.
func assignmentSubmission(s *board.Submitted) AssignmentSubmission {
	v := AssignmentSubmission{
		ID: s.ID, SID: s.SID, Version: s.Version, Active: s.Active, Original: s.Original, Name: s.Name,
		Size: s.Size, SHA256: hex.EncodeToString(s.SHA256[:]), Received: s.Received.UTC(), LateMS: s.LateMS,
		Extended: s.Extended,
	}
	if s.Due != 0 {
		d := timeMS(s.Due)
		v.Due = &d
	}
	return v
}

// msText writes a time as the listings do: RFC 3339 in UTC with
// milliseconds, "" for none.
func msText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// timeMS is milliseconds since 1970 as a time, in UTC.
func timeMS(ms uint64) time.Time { return time.UnixMilli(int64(ms)).UTC() }

// lateText says how late, for a person.
func lateText(ms uint64) string {
	if ms == 0 {
		return "on time"
	}
	return "late " + (time.Duration(ms) * time.Millisecond).String()
}

// assignmentRows reads the submissions to an assignment from the board's
// database, read-only, without their evidence (board.Store.Summaries). An assignment without any, which the configuration
// does not define either, is an error that lists those it does.
func assignmentRows(cfg *config.Config, assignment, sid string) ([]board.Submitted, error) {
	st, err := openBoardStore(cfg.Board.DataDir)
	if err != nil {
		return nil, err
	}
	subs, err := st.Summaries(assignment, sid)
	st.Close()
	if err != nil {
		return nil, err
	}
	if len(subs) == 0 && sid == "" {
		if _, err := findAssignment(&cfg.Board, assignment); err != nil {
			return nil, err
		}
	}
	return subs, nil
}

// ListAssignment prints the submissions to one assignment (`pkiboard
// submissions --assignment A`): by default the active version of each
// student; every version with AllVersions; only the late ones with
// LateOnly; as a table, JSON or CSV. It reads the listing's columns only
// (board.Store.EachSummary) and writes each line as it reads it: the JSON
// and the CSV go out as they come, the table is aligned from its text.
func ListAssignment(_ context.Context, cfg *config.Config, o AssignmentListOptions, w io.Writer) error {
	st, err := openBoardStore(cfg.Board.DataDir)
	if err != nil {
		return fmt.Errorf("submissions --assignment %s: %w", o.Assignment, err)
	}
	defer st.Close()
	out := newAssignmentWriter(o.Format, w)
	seen := false
	err = st.EachSummary(o.Assignment, o.SID, func(s *board.Submitted) error {
		seen = true
		if (!o.AllVersions && !s.Active) || (o.LateOnly && s.LateMS == 0) {
			return nil
		}
		return out.line(assignmentSubmission(s))
	})
	if err == nil && !seen && o.SID == "" {
		_, err = findAssignment(&cfg.Board, o.Assignment)
	}
	if err != nil {
		return fmt.Errorf("submissions --assignment %s: %w", o.Assignment, err)
	}
	return out.end()
}

// assignmentWriter writes the lines of `pkiboard submissions --assignment`
// in one of the formats, one at a time; nothing reaches w before the first
// line (or end).
type assignmentWriter struct {
	format string
	w      io.Writer
	n      int               // lines written
	csv    *csv.Writer       // FormatCSV
	table  *tabwriter.Writer // FormatTable
}

func newAssignmentWriter(format string, w io.Writer) *assignmentWriter {
	return &assignmentWriter{format: format, w: w}
}

// line writes one line.
func (a *assignmentWriter) line(l AssignmentSubmission) error {
	defer func() { a.n++ }()
	switch a.format {
	case FormatJSON:
		// What printJSON writes of the whole list, element by element.
		data, err := json.MarshalIndent(l, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if a.n == 0 {
			sep = "[\n  "
		}
		_, err = io.WriteString(a.w, sep+string(data))
		return err
	case FormatCSV:
		if a.n == 0 {
			a.csvHeader()
		}
		return a.csv.Write([]string{l.SID, strconv.FormatUint(uint64(l.Version), 10), strconv.FormatBool(l.Active), l.Original, l.Name,
			strconv.FormatInt(l.Size, 10), l.SHA256, msText(&l.Received), msText(l.Due), strconv.FormatUint(l.LateMS, 10),
			strconv.FormatBool(l.Extended), l.ID})
	}
	if a.n == 0 {
		a.tableHeader()
	}
	active, ext := "", ""
	if l.Active {
		active = "active"
	}
	if l.Extended {
		ext = "extended"
	}
	_, err := fmt.Fprintf(a.table, "%s\t%d\t%s\t%q\t%d\t%s…\t%s\t%s\t%s\t%s\t%s\n", l.SID, l.Version, active, l.Original, l.Size, l.SHA256[:16],
		msText(&l.Received), orNone(msText(l.Due)), lateText(l.LateMS), ext, l.ID)
	return err
}

func (a *assignmentWriter) csvHeader() {
	a.csv = csv.NewWriter(a.w)
	_ = a.csv.Write([]string{"sid", "version", "active", "original", "name", "size", "sha256", "received", "due", "late_ms", "extended", "id"})
}

func (a *assignmentWriter) tableHeader() {
	a.table = newTable(a.w)
	fmt.Fprintln(a.table, "SID\tVERSION\tACTIVE\tORIGINAL\tSIZE\tSHA-256\tRECEIVED\tDUE\tLATE\tEXTENSION\tID")
}

// end finishes the output.
func (a *assignmentWriter) end() error {
	switch a.format {
	case FormatJSON:
		end := "\n]\n"
		if a.n == 0 {
			end = "[]\n"
		}
		_, err := io.WriteString(a.w, end)
		return err
	case FormatCSV:
		if a.n == 0 {
			a.csvHeader()
		}
		a.csv.Flush()
		return a.csv.Error()
	}
	if a.n == 0 {
		a.tableHeader()
	}
	return a.table.Flush()
}

// orNone is s, or "none" for "".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// courseRoster reads board.roster_file (internal/roster), its SIDs checked
// against ca.sid_pattern (the default if the file sets none); nil without
// one.
func courseRoster(cfg *config.Config) ([]roster.Entry, error) {
	if cfg.Board.RosterFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(cfg.Board.RosterFile)
	if err != nil {
		return nil, fmt.Errorf("board.roster_file: %w", err)
	}
	entries, err := roster.Parse(data, cfg.CA.SIDPattern.Regexp())
	if err != nil {
		return nil, fmt.Errorf("the roster %s (board.roster_file), %w: fix that line", cfg.Board.RosterFile, err)
	}
	return entries, nil
}

// ProgressOptions are the options of `pkiboard progress`.
type ProgressOptions struct {
	Assignment string
	Format     string // FormatTable, FormatJSON or FormatCSV
}

// ProgressReport is what `pkiboard progress --json` prints.
type ProgressReport struct {
	Assignment string           `json:"assignment"`
	Roster     string           `json:"roster,omitempty"` // board.roster_file
	Counts     board.Counts     `json:"counts"`
	Students   []board.Progress `json:"students"`
}

// Progress prints the roster (board.roster_file) against who submitted to
// an assignment (`pkiboard progress`): each student on time, late or
// missing by the version that counts, with her extension, those who
// submitted without being on the roster, and the counts.
func Progress(_ context.Context, cfg *config.Config, o ProgressOptions, w io.Writer) error {
	entries, err := courseRoster(cfg)
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	subs, err := assignmentRows(cfg, o.Assignment, "")
	if err != nil {
		return fmt.Errorf("progress --assignment %s: %w", o.Assignment, err)
	}
	st, err := openBoardStore(cfg.Board.DataDir)
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	ext, err := st.Extensions(o.Assignment)
	st.Close()
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	lines, n := board.ProgressOf(entries, board.CountedOf(subs), ext)
	if lines == nil {
		lines = []board.Progress{}
	}
	switch o.Format {
	case FormatJSON:
		return printJSON(w, ProgressReport{Assignment: o.Assignment, Roster: cfg.Board.RosterFile, Counts: n, Students: lines})
	case FormatCSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"sid", "name", "email", "on_roster", "status", "version", "received", "late_ms", "extended_until"})
		for _, p := range lines {
			version := ""
			if p.Version > 0 {
				version = strconv.Itoa(p.Version)
			}
			_ = cw.Write([]string{p.SID, p.Name, p.Email, strconv.FormatBool(p.OnRoster), p.Status, version,
				msText(p.Received), strconv.FormatInt(p.LateMS, 10), msText(p.Extended)})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SID\tNAME\tSTATUS\tVERSION\tRECEIVED\tLATE\tEXTENDED UNTIL")
	for _, p := range lines {
		status, version := p.Status, ""
		if !p.OnRoster {
			status += " (not on the roster)"
		}
		if p.Version > 0 {
			version = strconv.Itoa(p.Version)
		}
		late := ""
		if p.Status == board.StatusLate {
			late = (time.Duration(p.LateMS) * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.SID, p.Name, status, version, msText(p.Received), late, msText(p.Extended))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	roster := "no roster (board.roster_file is not set)"
	if cfg.Board.RosterFile != "" {
		roster = fmt.Sprintf("%d on the roster", n.Roster)
	}
	_, err = fmt.Fprintf(w, "%s: %s; %d on time, %d late, %d missing, %d with an extension; %d submitted without being on the roster\n",
		o.Assignment, roster, n.OnTime, n.Late, n.Missing, n.Extended, n.OffRoster)
	return err
}
