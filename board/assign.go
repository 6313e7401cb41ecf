package board

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"go.uber.org/zap"

	"pkiboard/wire"
)

// Limits of an assignment's fields, as the wire carries them (PROTOCOL.md
// §5.4: Terms and Assignments).
const (
	maxTitle    = wire.MaxTitleLen    // title: string16, 0..1024 bytes
	maxPatterns = wire.MaxPatternsLen // the accepted patterns, comma-separated: 0..1024 bytes
)

// assignmentID is what an assignment's id may be: 1..64 bytes, a letter or
// digit first, then letters, digits, '.', '_' and '-'. It is not a path
// anywhere, but it appears in file names and CSV cells, so it is kept plain.
var assignmentID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Assignment is one assignment of the course, as the assignments file
// (board.assignments_file) defines it.
type Assignment struct {
	ID    string
	Title string
	// Opens, Due and Lock are the assignment's times, each zero for none: no
	// submission before Opens; one received after Due is late; none received
	// at or after Lock. Opens < Due ≤ Lock where both are set. They keep the
	// zone the file wrote them in, for the sentences students read.
	Opens, Due, Lock time.Time
	// Accept are the accepted file patterns (path.Match, matched against the
	// file's original name, case as written); empty accepts any name.
	Accept []string
	// MaxSize is the largest file accepted, in bytes; 0 is the board's
	// board.max_submission.
	MaxSize int64
	// AllowEmpty says whether an empty file is accepted.
	AllowEmpty bool
	// MaxVersions is how many submissions one student may make; 0 is no
	// limit.
	MaxVersions int
	// Quota is the most bytes one student's stored submissions to the
	// assignment may hold together; 0 is no quota.
	Quota int64
}

// LabAssignmentOf returns the implicit assignment of a board without an assignments
// file: id "lab", always open, no due or lock time, any file (empty ones
// included) up to maxSize bytes, any number of versions.
func LabAssignmentOf(maxSize int64) Assignment {
	return Assignment{ID: LabAssignment, Title: "the lab", MaxSize: maxSize, AllowEmpty: true}
}

// Accepts reports whether original, a file's own name, matches one of the
// accepted patterns (any name, if there are none).
func (a *Assignment) Accepts(original string) bool {
	if len(a.Accept) == 0 {
		return true
	}
	for _, p := range a.Accept {
		if ok, _ := path.Match(p, original); ok {
			return true
		}
	}
	return false
}

// Patterns returns the accepted patterns as the wire lists them:
// comma-separated.
func (a *Assignment) Patterns() string { return strings.Join(a.Accept, ",") }

// rawAssignment is one [[assignment]] table as the file writes it. Times and
// sizes are decoded by hand, so that an error names its line and its key.
type rawAssignment struct {
	ID          *string  `toml:"id"`
	Title       string   `toml:"title"`
	Opens       any      `toml:"opens"`
	Due         any      `toml:"due"`
	Lock        any      `toml:"lock"`
	Accept      []string `toml:"accept"`
	MaxSize     any      `toml:"max_size"`
	AllowEmpty  bool     `toml:"allow_empty"`
	MaxVersions int64    `toml:"max_versions"`
	Quota       any      `toml:"quota"`
}

type rawFile struct {
	Assignment []rawAssignment `toml:"assignment"`
}

// ParseAssignments reads an assignments file: TOML, one [[assignment]]
// table per assignment, with the keys id (required), title, opens, due,
// lock (RFC 3339 with a zone, as a TOML date-time or a string), accept (a
// list of patterns), max_size and quota (bytes, an integer or a string like
// "10MiB"), allow_empty and max_versions. maxSize is the board's own limit
// (board.max_submission): no assignment may accept more. An error names the
// line and says what to fix.
func ParseAssignments(data []byte, maxSize int64) ([]Assignment, error) {
	var raw rawFile
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	lines := tableLines(data)
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		at := "the file"
		if l := findKey(data, lines, -1, k[len(k)-1]); l > 0 {
			at = "line " + strconv.Itoa(l)
		}
		return nil, fmt.Errorf("%s: unknown key %q: an assignment has the keys id, title, opens, due, lock, accept, max_size, allow_empty, max_versions and quota", at, k.String())
	}
	out := make([]Assignment, 0, len(raw.Assignment))
	seen := map[string]int{}
	for i := range raw.Assignment {
		r := &raw.Assignment[i]
		line := func(key string) int {
			if l := findKey(data, lines, i, key); l > 0 {
				return l
			}
			if i < len(lines) {
				return lines[i]
			}
			return 0
		}
		fail := func(key, format string, args ...any) error {
			where := fmt.Sprintf("assignment %d", i+1)
			if r.ID != nil {
				where = fmt.Sprintf("assignment %q", *r.ID)
			}
			if l := line(key); l > 0 {
				where = fmt.Sprintf("line %d (%s)", l, where)
			}
			return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
		}
		a, err := r.check(fail, maxSize)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[a.ID]; dup {
			return nil, fail("id", "the id %q is also assignment %d's: give each assignment its own id", a.ID, j+1)
		}
		seen[a.ID] = i
		out = append(out, a)
	}
	return out, nil
}

// check validates one raw assignment; fail makes an error that names the
// line of a key.
func (r *rawAssignment) check(fail func(key, format string, args ...any) error, maxSize int64) (Assignment, error) {
	var a Assignment
	if r.ID == nil {
		return a, fail("", "no id: give the assignment an id (id = \"hw1\")")
	}
	a.ID = *r.ID
	if !assignmentID.MatchString(a.ID) {
		return a, fail("id", "the id %q is not 1 to 64 letters, digits, '.', '_' or '-' beginning with a letter or digit: write it like \"hw1\" or \"lab-2\"", a.ID)
	}
	if len(r.Title) > maxTitle || !utf8.ValidString(r.Title) {
		return a, fail("title", "the title is longer than %d bytes: shorten it", maxTitle)
	}
	a.Title = r.Title
	var err error
	for _, f := range []struct {
		key string
		v   any
		dst *time.Time
	}{{"opens", r.Opens, &a.Opens}, {"due", r.Due, &a.Due}, {"lock", r.Lock, &a.Lock}} {
		if *f.dst, err = parseInstant(f.v); err != nil {
			return a, fail(f.key, "%s: %v", f.key, err)
		}
	}
	switch {
	case !a.Opens.IsZero() && !a.Due.IsZero() && !a.Opens.Before(a.Due):
		return a, fail("due", "due (%s) is not after opens (%s): an assignment opens before it is due", rfc3339(a.Due), rfc3339(a.Opens))
	case !a.Due.IsZero() && !a.Lock.IsZero() && a.Lock.Before(a.Due):
		return a, fail("lock", "lock (%s) is before due (%s): the lock time is when late submissions stop, at or after the due time", rfc3339(a.Lock), rfc3339(a.Due))
	case !a.Opens.IsZero() && !a.Lock.IsZero() && !a.Opens.Before(a.Lock):
		return a, fail("lock", "lock (%s) is not after opens (%s): an assignment opens before it locks", rfc3339(a.Lock), rfc3339(a.Opens))
	}
	for _, p := range r.Accept {
		if _, err := path.Match(p, ""); err != nil || p == "" || strings.ContainsAny(p, ",/") {
			return a, fail("accept", "the pattern %q is not a file-name glob: write patterns like \"*.pdf\" or \"report-?.txt\" (no ',' or '/'; '[' must close)", p)
		}
	}
	a.Accept = slices.Clone(r.Accept)
	if len(a.Patterns()) > maxPatterns {
		return a, fail("accept", "the accepted patterns take %d bytes, more than %d: use fewer or shorter patterns", len(a.Patterns()), maxPatterns)
	}
	if a.MaxSize, err = parseBytes(r.MaxSize); err != nil {
		return a, fail("max_size", "max_size: %v", err)
	}
	if r.MaxSize != nil && a.MaxSize == 0 {
		return a, fail("max_size", "max_size is 0: leave it out for the board's limit (board.max_submission), or give a size like \"10MiB\"")
	}
	if a.MaxSize > maxSize {
		return a, fail("max_size", "max_size %d is above the board's limit, board.max_submission = %d: lower it, or raise board.max_submission", a.MaxSize, maxSize)
	}
	if a.MaxSize == 0 {
		a.MaxSize = maxSize
	}
	if a.Quota, err = parseBytes(r.Quota); err != nil {
		return a, fail("quota", "quota: %v", err)
	}
	if r.MaxVersions < 0 || r.MaxVersions > 1<<20 {
		return a, fail("max_versions", "max_versions %d is not between 0 (no limit) and %d", r.MaxVersions, 1<<20)
	}
	a.MaxVersions = int(r.MaxVersions)
	a.AllowEmpty = r.AllowEmpty
	return a, nil
}

// parseInstant reads a time of the assignments file: nil (none), a TOML
// offset date-time, or a string in RFC 3339. A time without a zone is
// refused: the file must say which instant it means.
func parseInstant(v any) (time.Time, error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		switch v.Location().String() {
		case "datetime-local", "date-local", "time-local":
			return time.Time{}, errors.New("a date-time without a zone: write it in RFC 3339 with its offset, like 2026-11-29T23:59:00+08:00 or 2026-11-29T15:59:00Z")
		}
		return checkEpoch(v)
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not RFC 3339 with a zone: write it like 2026-11-29T23:59:00+08:00", v)
		}
		return checkEpoch(t)
	default:
		return time.Time{}, fmt.Errorf("%v is not a time: write it in RFC 3339 with a zone, like 2026-11-29T23:59:00+08:00", v)
	}
}

// checkEpoch refuses a time the wire cannot carry: milliseconds since 1970
// in a u64, where 0 means none.
func checkEpoch(t time.Time) (time.Time, error) {
	if t.UnixMilli() <= 0 {
		return time.Time{}, fmt.Errorf("%s is not after 1970-01-01T00:00:00Z", t.Format(time.RFC3339))
	}
	return t, nil
}

// parseBytes reads a byte count: nil (0), a non-negative integer, or a
// string with a binary unit ("512", "64KiB", "10MiB", "1GiB").
func parseBytes(v any) (int64, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("%d is negative: give a size in bytes, or like \"10MiB\"", v)
		}
		return v, nil
	case string:
		s := strings.TrimSpace(v)
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}} {
			num, ok := strings.CutSuffix(s, u.suffix)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 || n > (1<<62)/u.mult {
				break
			}
			return n * u.mult, nil
		}
		return 0, fmt.Errorf("%q is not a size: write it like 1048576, \"512KiB\", \"10MiB\" or \"1GiB\"", v)
	default:
		return 0, fmt.Errorf("%v is not a size: write it like 1048576 or \"10MiB\"", v)
	}
}

// tableLines returns the line numbers (from 1) of the file's
// [[assignment]] headers, in order.
func tableLines(data []byte) []int {
	var out []int
	for n, l := range bytes.Split(data, []byte("\n")) {
		l, _, _ = bytes.Cut(l, []byte("#"))
		t := strings.Join(strings.Fields(string(l)), "")
		if t == "[[assignment]]" || t == `[["assignment"]]` {
			out = append(out, n+1)
		}
	}
	return out
}

// findKey returns the line of key within the i-th [[assignment]] table (the
// whole file for i < 0), or 0 if it is not written there as `key = ...`.
func findKey(data []byte, tables []int, i int, key string) int {
	if key == "" {
		return 0
	}
	from, to := 1, 1<<30
	if i >= 0 {
		if i >= len(tables) {
			return 0
		}
		from = tables[i]
		if i+1 < len(tables) {
			to = tables[i+1]
		}
	}
	for n, l := range bytes.Split(data, []byte("\n")) {
		if n+1 < from || n+1 >= to {
			continue
		}
		k, _, ok := bytes.Cut(l, []byte("="))
		if ok && string(bytes.Trim(bytes.TrimSpace(k), `"'`)) == key {
			return n + 1
		}
	}
	return 0
}

// rfc3339 formats t as the file would write it, in its own zone.
func rfc3339(t time.Time) string { return t.Format(time.RFC3339) }

// AssignmentsFile is the course's assignments file, read again whenever its
// modification time or size changes (as the CA's roster is): if the changed
// file cannot be read or is invalid, the last good version stays in force and
// a warning is logged. Its methods are safe for concurrent use.
type AssignmentsFile struct {
	path    string
	maxSize int64
	log     *zap.Logger

	mu      sync.Mutex
	modTime time.Time
	size    int64
	list    []Assignment
}

// LoadAssignments reads the assignments file at path; maxSize is
// board.max_submission. An invalid file is an error that names the file, the
// line and what to fix: the board refuses to start with it.
func LoadAssignments(path string, maxSize int64, log *zap.Logger) (*AssignmentsFile, error) {
	f := &AssignmentsFile{path: path, maxSize: maxSize, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("board: board.assignments_file: %w", err)
	}
	if err := f.reload(fi); err != nil {
		return nil, err
	}
	log.Info("assignments loaded", zap.String("file", path), zap.Int("assignments", len(f.list)))
	return f, nil
}

// Current returns the assignments in force, reading the file again first if
// it changed. The caller must not modify them.
func (f *AssignmentsFile) Current() []Assignment {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	switch {
	case err != nil:
		f.log.Warn("cannot read the assignments file; the last version read stays in force",
			zap.String("file", f.path), zap.Error(err))
	case !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size:
		if err := f.reload(fi); err != nil {
			f.log.Warn("the changed assignments file was not taken; the last version read stays in force", zap.Error(err))
			// Do not try again until the file changes once more.
			f.modTime, f.size = fi.ModTime(), fi.Size()
		} else {
			f.log.Info("assignments reloaded", zap.String("file", f.path), zap.Int("assignments", len(f.list)))
		}
	}
	return f.list
}

// reload reads the file, whose stat is fi. f.mu is held (or f is new).
func (f *AssignmentsFile) reload(fi os.FileInfo) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("board: board.assignments_file: %w", err)
	}
	list, err := ParseAssignments(data, f.maxSize)
	if err != nil {
		return fmt.Errorf("board: the assignments file %s, %w", f.path, err)
	}
	f.list, f.modTime, f.size = list, fi.ModTime(), fi.Size()
	return nil
}

// find returns the assignment with the given id in list, or nil.
func find(list []Assignment, id string) *Assignment {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}
