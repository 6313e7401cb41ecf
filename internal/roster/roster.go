// Package roster reads the course roster: the one file that says which
// students (SIDs) belong to the course, with their names and email addresses
// where known. The CA reads it (ca.roster_file) to refuse enrollment to
// anyone else and to make one token per student; the board reads the same
// file (board.roster_file) to list who submitted and who is missing.
//
// The file is CSV, one student per line, columns sid[,name[,email]]:
//
//	# course roster, spring term
//	sid,name,email
//	1155000001,Ada Lovelace,ada@example.edu
//	1155000002,"Hopper, Grace"
//	1155000003
//
// Lines whose first non-blank character is '#' are comments, blank lines are
// ignored, and a '#' outside a quoted field starts a comment that runs to the
// end of the line (so the one-SID-per-line files of earlier versions, with
// their trailing comments, keep working). A first line sid,name,email (or a
// prefix of it: sid or sid,name), in any case, is a header. Fields are
// trimmed of surrounding spaces; a field cannot span lines. Every SID must
// match the SID pattern in full, a SID may appear only once, a name must be
// UTF-8 without control characters, and an email, when given, must be a bare
// address (user@host, no display name).
//
// A File is read again when the file's size or modification time changes;
// if the changed file cannot be read or is not valid, the last good version
// stays in force and a warning is logged. The package does not write rosters.
package roster

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
)

// MaxFileSize is the largest roster file read (a course of 100,000 students
// with long names and addresses is well under it).
const MaxFileSize = 16 << 20

// MaxFieldLen is the longest name or email address accepted, in bytes.
const MaxFieldLen = 256

// Entry is one student of the roster. Name and Email are empty when the file
// does not give them.
type Entry struct {
	SID   string `json:"sid"`
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// LineError is a roster line that cannot be taken: Line is its number,
// counted from 1, and Reason says what is wrong with it.
type LineError struct {
	Line   int
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// ErrTooLarge is returned for a roster file larger than MaxFileSize.
var ErrTooLarge = fmt.Errorf("the roster file is larger than %d bytes; split the course or check the file", MaxFileSize)

// header is the optional first line, in lower case.
var header = []string{"sid", "name", "email"}

// Parse reads a roster (see the package comment) and returns its entries in
// the file's order. sidRE must match every SID in full (Parse anchors it).
// The first bad line is returned as a *LineError.
func Parse(data []byte, sidRE *regexp.Regexp) ([]Entry, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	full := anchor(sidRE)
	var entries []Entry
	seen := map[string]int{} // SID → its line
	first := true
	for n, rest := 1, data; len(rest) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		fields, err := splitLine(line)
		if err != nil {
			return nil, &LineError{n, err.Error()}
		}
		if fields == nil {
			continue
		}
		if first {
			first = false
			if isHeader(fields) {
				continue
			}
		}
		e, err := entry(fields, full)
		if err != nil {
			return nil, &LineError{n, err.Error()}
		}
		if prev, ok := seen[e.SID]; ok {
			return nil, &LineError{n, fmt.Sprintf("SID %s is already on line %d; keep one of the two lines", e.SID, prev)}
		}
		seen[e.SID] = n
		entries = append(entries, e)
	}
	return entries, nil
}

// splitLine returns the fields of one line, or nil for a blank or comment
// line. A '#' outside double quotes ends the line.
func splitLine(line []byte) ([]string, error) {
	if !utf8.Valid(line) {
		return nil, errors.New("not UTF-8; save the roster as UTF-8")
	}
	quoted := false
	for i, c := range line {
		if c == '"' {
			quoted = !quoted
		}
		if c == '#' && !quoted {
			line = line[:i]
			break
		}
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, nil
	}
	r := csv.NewReader(bytes.NewReader(line))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = false
	fields, err := r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("not a CSV line (%v); quote a field that holds a comma or a quote as \"...\", with \"\" for a quote", err)
	}
	if _, err := r.Read(); err != io.EOF {
		// A quoted field held a line break the csv reader took; a line
		// split this way cannot hold one.
		return nil, errors.New("a field spans lines; put each student on one line")
	}
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	return fields, nil
}

func isHeader(fields []string) bool {
	if len(fields) > len(header) {
		return false
	}
	for i, f := range fields {
		if !strings.EqualFold(f, header[i]) {
			return false
		}
	}
	return true
}

// entry checks the fields of one student's line.
func entry(fields []string, sidRE *regexp.Regexp) (Entry, error) {
	if len(fields) > 3 {
		return Entry{}, fmt.Errorf("%d columns; a line is sid[,name[,email]] (quote a name that holds a comma)", len(fields))
	}
	e := Entry{SID: fields[0]}
	if len(fields) > 1 {
		e.Name = fields[1]
	}
	if len(fields) > 2 {
		e.Email = fields[2]
	}
	if !sidRE.MatchString(e.SID) {
		return Entry{}, fmt.Errorf("%q does not match the SID pattern %s; correct the SID", e.SID, sidRE)
	}
	if len(e.Name) > MaxFieldLen {
		return Entry{}, fmt.Errorf("the name is longer than %d bytes; shorten it", MaxFieldLen)
	}
	if strings.IndexFunc(e.Name, unicode.IsControl) >= 0 {
		return Entry{}, fmt.Errorf("the name %q holds a control character; remove it", e.Name)
	}
	if e.Email != "" {
		if len(e.Email) > MaxFieldLen {
			return Entry{}, fmt.Errorf("the email address is longer than %d bytes; shorten it", MaxFieldLen)
		}
		a, err := mail.ParseAddress(e.Email)
		if err != nil || a.Name != "" || a.Address != e.Email {
			return Entry{}, fmt.Errorf("%q is not a bare email address (user@host); correct it or leave the column empty", e.Email)
		}
	}
	return e, nil
}

// anchor returns re made to match only in full.
func anchor(re *regexp.Regexp) *regexp.Regexp {
	return regexp.MustCompile(`^(?:` + re.String() + `)$`)
}

// File is a roster file, read again on use whenever it changes. Its methods
// are safe for concurrent use.
type File struct {
	path  string
	sidRE *regexp.Regexp
	log   *zap.Logger

	mu      sync.Mutex
	modTime time.Time
	size    int64
	entries []Entry
	bySID   map[string]int // SID → index in entries
}

// Load reads the roster at path. sidRE is the SID pattern every SID must
// match in full; log (nil for none) receives the reloads and the warnings
// about a changed file that was not taken.
func Load(path string, sidRE *regexp.Regexp, log *zap.Logger) (*File, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &File{path: path, sidRE: anchor(sidRE), log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("roster: %w; check the roster_file setting", err)
	}
	if err := f.reload(fi); err != nil {
		return nil, err
	}
	log.Info("roster loaded", zap.String("file", path), zap.Int("sids", len(f.entries)))
	return f, nil
}

// Path returns the file's name, as given to Load.
func (f *File) Path() string { return f.path }

// Contains reports whether sid is on the roster.
func (f *File) Contains(sid string) bool {
	_, ok := f.Lookup(sid)
	return ok
}

// Lookup returns sid's entry, and whether sid is on the roster.
func (f *File) Lookup(sid string) (Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh()
	i, ok := f.bySID[sid]
	if !ok {
		return Entry{}, false
	}
	return f.entries[i], true
}

// Entries returns a copy of the roster's entries, in the file's order.
func (f *File) Entries() []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh()
	return append([]Entry(nil), f.entries...)
}

// refresh reads the file again if it changed. f.mu is held. If the changed
// file cannot be read or has a bad line, the last good version stays in
// force and a warning is logged, once per change.
func (f *File) refresh() {
	fi, err := os.Stat(f.path)
	switch {
	case err != nil:
		f.log.Warn("cannot read the roster; the last version read stays in force",
			zap.String("file", f.path), zap.Error(err))
	case !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size:
		if err := f.reload(fi); err != nil {
			f.log.Warn("the changed roster was not taken; the last version read stays in force", zap.Error(err))
			// Do not try again until the file changes once more.
			f.modTime, f.size = fi.ModTime(), fi.Size()
		} else {
			f.log.Info("roster reloaded", zap.String("file", f.path), zap.Int("sids", len(f.entries)))
		}
	}
}

// reload reads the file, whose stat is fi. f.mu is held (or f is new).
func (f *File) reload(fi os.FileInfo) error {
	data, err := readBounded(f.path)
	if err != nil {
		return fmt.Errorf("roster %s: %w", f.path, err)
	}
	entries, err := Parse(data, f.sidRE)
	if err != nil {
		return fmt.Errorf("roster %s: %w", f.path, err)
	}
	bySID := make(map[string]int, len(entries))
	for i, e := range entries {
		bySID[e.SID] = i
	}
	f.entries, f.bySID, f.modTime, f.size = entries, bySID, fi.ModTime(), fi.Size()
	return nil
}

// readBounded reads at most MaxFileSize bytes of path.
func readBounded(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	return data, nil
}
