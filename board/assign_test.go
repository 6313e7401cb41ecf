package board

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

const testMaxSize = 64 << 20

func TestParseAssignmentsFile(t *testing.T) {
	data, err := os.ReadFile("testdata/assignments/course.toml")
	if err != nil {
		t.Fatal(err)
	}
	list, err := ParseAssignments(data, testMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("got %d assignments, want 3", len(list))
	}
	hw1 := list[0]
	hk := time.FixedZone("", 8*3600)
	want := Assignment{
		ID: "hw1", Title: "Homework 1: RSA by hand",
		Opens:  time.Date(2026, 9, 1, 9, 0, 0, 0, hk),
		Due:    time.Date(2026, 9, 15, 23, 59, 0, 0, hk),
		Lock:   time.Date(2026, 9, 18, 23, 59, 0, 0, hk),
		Accept: []string{"*.pdf"}, MaxSize: 10 << 20, MaxVersions: 5, Quota: 30 << 20,
	}
	if hw1.ID != want.ID || hw1.Title != want.Title || !hw1.Opens.Equal(want.Opens) || !hw1.Due.Equal(want.Due) ||
		!hw1.Lock.Equal(want.Lock) || hw1.Patterns() != "*.pdf" || hw1.MaxSize != want.MaxSize ||
		hw1.MaxVersions != 5 || hw1.Quota != want.Quota || hw1.AllowEmpty {
		t.Errorf("hw1: got %+v, want %+v", hw1, want)
	}
	if got := rfc3339(hw1.Due); got != "2026-09-15T23:59:00+08:00" {
		t.Errorf("hw1's due time is shown as %s, want it in the zone the file wrote", got)
	}
	proj := list[1]
	if !proj.Due.Equal(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)) || !proj.Opens.IsZero() || !proj.Lock.IsZero() {
		t.Errorf("proj's times: %+v", proj)
	}
	if proj.MaxSize != testMaxSize {
		t.Errorf("proj without max_size has a limit of %d, want the board's %d", proj.MaxSize, testMaxSize)
	}
	notes := list[2]
	if !notes.Accepts("anything at all.bin") || notes.AllowEmpty || notes.MaxVersions != 0 || notes.Quota != 0 {
		t.Errorf("notes, all defaults: %+v", notes)
	}
}

func TestAcceptPatterns(t *testing.T) {
	a := Assignment{Accept: []string{"*.pdf", "report-?.txt", "[Mm]ain.go"}}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"essay.pdf", true},
		{"essay.PDF", false}, // case as written
		{"essay.pdf.exe", false},
		{"report-1.txt", true},
		{"report-12.txt", false},
		{"Main.go", true},
		{"main.go", true},
		{"sub/essay.pdf", false}, // '*' matches no '/'
		{"", false},
	} {
		if got := a.Accepts(tc.name); got != tc.want {
			t.Errorf("Accepts(%q) = %t, want %t", tc.name, got, tc.want)
		}
	}
	if !(&Assignment{}).Accepts("x") {
		t.Error("an assignment without patterns refuses a name; it accepts any")
	}
}

// TestParseAssignmentsRefuses is every rule of the file: each bad file is
// refused with the line and what to fix.
func TestParseAssignmentsRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string // in the error
	}{
		{"syntax", "[[assignment]]\nid = \"a\"\ndue = \n", []string{"line 3"}},
		{"no id", "[[assignment]]\ntitle = \"x\"\n", []string{"line 1", "no id"}},
		{"bad id", "[[assignment]]\nid = \"../etc\"\n", []string{"line 2", "not 1 to 64"}},
		{"long id", "[[assignment]]\nid = \"" + strings.Repeat("a", 65) + "\"\n", []string{"line 2"}},
		{"duplicate id", "[[assignment]]\nid = \"a\"\n\n[[assignment]]\nid = \"a\"\n", []string{"line 5", "also assignment 1"}},
		{"local time", "[[assignment]]\nid = \"a\"\ndue = 2026-11-29T23:59:00\n", []string{"line 3", "without a zone"}},
		{"local date", "[[assignment]]\nid = \"a\"\ndue = 2026-11-29\n", []string{"line 3", "without a zone"}},
		{"string without zone", "[[assignment]]\nid = \"a\"\ndue = \"2026-11-29T23:59:00\"\n", []string{"line 3", "RFC 3339"}},
		{"number time", "[[assignment]]\nid = \"a\"\nlock = 5\n", []string{"line 3", "not a time"}},
		{"before 1970", "[[assignment]]\nid = \"a\"\nopens = 1969-12-31T00:00:00Z\n", []string{"line 3", "1970"}},
		{"due before opens", "[[assignment]]\nid = \"a\"\nopens = 2026-11-29T00:00:00Z\ndue = 2026-11-28T00:00:00Z\n", []string{"line 4", "not after opens"}},
		{"due at opens", "[[assignment]]\nid = \"a\"\nopens = 2026-11-29T00:00:00Z\ndue = 2026-11-29T08:00:00+08:00\n", []string{"line 4", "not after opens"}},
		{"lock before due", "[[assignment]]\nid = \"a\"\ndue = 2026-11-29T00:00:00Z\nlock = 2026-11-28T23:59:59Z\n", []string{"line 4", "before due"}},
		{"lock at opens", "[[assignment]]\nid = \"a\"\nopens = 2026-11-29T00:00:00Z\nlock = 2026-11-29T00:00:00Z\n", []string{"line 4", "not after opens"}},
		{"bad pattern", "[[assignment]]\nid = \"a\"\naccept = [\"[a-\"]\n", []string{"line 3", "glob"}},
		{"comma pattern", "[[assignment]]\nid = \"a\"\naccept = [\"a,b\"]\n", []string{"line 3"}},
		{"slash pattern", "[[assignment]]\nid = \"a\"\naccept = [\"dir/*.go\"]\n", []string{"line 3"}},
		{"empty pattern", "[[assignment]]\nid = \"a\"\naccept = [\"\"]\n", []string{"line 3"}},
		{"too many patterns", "[[assignment]]\nid = \"a\"\naccept = [" + strings.Repeat(`"*.xxxxxxxxxxxxxxxx",`, 60) + "]\n", []string{"line 3", "fewer"}},
		{"bad size", "[[assignment]]\nid = \"a\"\nmax_size = \"10MB\"\n", []string{"line 3", "not a size"}},
		{"zero size", "[[assignment]]\nid = \"a\"\nmax_size = 0\n", []string{"line 3", "leave it out"}},
		{"size above board", "[[assignment]]\nid = \"a\"\nmax_size = \"1GiB\"\n", []string{"line 3", "board.max_submission"}},
		{"negative quota", "[[assignment]]\nid = \"a\"\nquota = -1\n", []string{"line 3", "negative"}},
		{"negative versions", "[[assignment]]\nid = \"a\"\nmax_versions = -1\n", []string{"line 3", "max_versions"}},
		{"unknown key", "[[assignment]]\nid = \"a\"\nacept = [\"*.pdf\"]\n", []string{"line 3", "unknown key", "acept"}},
		{"title not a string", "[[assignment]]\nid = \"a\"\ntitle = 3\n", []string{"line 3"}},
		{"second table's error", "[[assignment]]\nid = \"a\"\ndue = 2026-11-29T00:00:00Z\n[[assignment]]\nid = \"b\"\ndue = \"x\"\n", []string{"line 6", `"b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAssignments([]byte(tc.file), testMaxSize)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseAssignmentsEdges(t *testing.T) {
	// due = lock is allowed: no late period.
	list, err := ParseAssignments([]byte("[[assignment]]\nid = \"a\"\ndue = 2026-11-29T00:00:00Z\nlock = 2026-11-29T08:00:00+08:00\n"), testMaxSize)
	if err != nil || len(list) != 1 {
		t.Fatalf("due = lock: %v", err)
	}
	// An empty file is a course of no assignments.
	if list, err := ParseAssignments(nil, testMaxSize); err != nil || len(list) != 0 {
		t.Fatalf("empty file: %v, %d", err, len(list))
	}
}

// TestAssignmentsFileReload: the file is read again when it changes; an
// invalid change leaves the last good version in force, with a warning; an
// invalid file at start is refused.
func TestAssignmentsFileReload(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "assignments.toml")
	write := func(s string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write("[[assignment]]\nid = \"a\"\ndue = \"\"\n", base)
	if _, err := LoadAssignments(p, testMaxSize, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("an invalid file at start: %v, want a refusal naming line 3", err)
	}
	write("[[assignment]]\nid = \"a\"\n", base)
	core, logs := observer.New(zap.InfoLevel)
	f, err := LoadAssignments(p, testMaxSize, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ids := func() string {
		var s []string
		for _, a := range f.Current() {
			s = append(s, a.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids(); got != "a" {
		t.Fatalf("got %q", got)
	}
	write("[[assignment]]\nid = \"a\"\n[[assignment]]\nid = \"b\"\n", base.Add(time.Second))
	if got := ids(); got != "a,b" {
		t.Fatalf("after an edit: got %q, want a,b", got)
	}
	write("[[assignment]]\nid = \"a\"\n[[assignment]]\nid = \"a\"\n", base.Add(2*time.Second))
	if got := ids(); got != "a,b" {
		t.Fatalf("after an invalid edit: got %q, want the last good a,b", got)
	}
	if logs.FilterMessageSnippet("stays in force").Len() != 1 {
		t.Errorf("no warning for the invalid edit: %v", logs.All())
	}
	ids() // unchanged since: no second warning
	if n := logs.FilterMessageSnippet("stays in force").Len(); n != 1 {
		t.Errorf("%d warnings for one invalid edit", n)
	}
	write("[[assignment]]\nid = \"c\"\n", base.Add(3*time.Second))
	if got := ids(); got != "c" {
		t.Fatalf("after a good edit: got %q, want c", got)
	}
	os.Remove(p)
	if got := ids(); got != "c" {
		t.Fatalf("after removing the file: got %q, want the last good c", got)
	}
}
