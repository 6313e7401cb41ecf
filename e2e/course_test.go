package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// courseSIDs are the students of TestCourse: s01 … s20.
func courseSIDs() []string {
	var sids []string
	for i := 1; i <= 20; i++ {
		sids = append(sids, fmt.Sprintf("s%02d", i))
	}
	return sids
}

// startCourse makes an installation whose board serves a course — its
// assignments file (assignments.toml) and roster (roster.csv) among files,
// which also holds the reports the students submit, each written into the
// installation — and starts its CA and its board.
func startCourse(t *testing.T, files map[string]string) (*install, *system) {
	t.Helper()
	in := newInstall(t, map[string]string{"board": "assignments_file = \"assignments.toml\"\nroster_file = \"roster.csv\""})
	for name, text := range files {
		if err := os.WriteFile(in.path(name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	return in, s
}

// progressJSON is what `pkiboard progress --json` prints.
type progressJSON struct {
	Counts struct {
		Roster    int `json:"roster"`
		OnTime    int `json:"on_time"`
		Late      int `json:"late"`
		Missing   int `json:"missing"`
		Extended  int `json:"extended"`
		OffRoster int `json:"off_roster"`
	}
	Students []struct {
		SID, Status string
		Version     int
		LateMS      int64      `json:"late_ms"`
		Extended    *time.Time `json:"extended"`
	}
}

// TestCourse runs a course on real processes: three assignments (one open,
// one past due that still takes late work, one locked), twenty students
// submitting in parallel: on time, late, refused after the lock, a file of
// the wrong type refused, an extension honoured, a resubmission that becomes
// version 2 and the active one. The staff's progress and listing say what
// happened, and the export holds each student's active version with a
// receipt that verifies offline with the root alone and states its
// assignment, due time, lateness and version.
func TestCourse(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	assignments := fmt.Sprintf(`
[[assignment]]
id = "hw-open"
title = "open now"
opens = %q
due = %q
lock = %q
accept = ["*.txt"]

[[assignment]]
id = "hw-late"
title = "past due, late work taken"
opens = %q
due = %q
lock = %q
accept = ["*.txt"]

[[assignment]]
id = "hw-locked"
title = "locked"
opens = %q
due = %q
lock = %q
`, at(-time.Hour), at(time.Hour), at(2*time.Hour),
		at(-3*time.Hour), at(-time.Hour), at(time.Hour),
		at(-3*time.Hour), at(-2*time.Hour), at(-time.Hour))
	sids := courseSIDs()
	roster := "sid,name,email\n"
	for _, sid := range sids {
		roster += fmt.Sprintf("%s,Student %s,%s@example.edu\n", sid, sid, sid)
	}
	in, s := startCourse(t, map[string]string{"assignments.toml": assignments, "roster.csv": roster,
		"report.txt": "my report\n", "report2.txt": "my better report\n", "report.pdf": "%PDF-1.7\n"})
	root := s.path("data", "ca", "root.pem")

	submit := func(assignment, report string, ids []string) result {
		t.Helper()
		return s.student(nil, "--ids", strings.Join(ids, ","), "--assignment", assignment, "--report", in.path(report), "--parallel", "5")
	}
	mustSubmit := func(assignment, report string, ids []string) {
		t.Helper()
		if r := submit(assignment, report, ids); r.code != 0 {
			t.Fatalf("%s to %s: exit %d\n%s\n%s", strings.Join(ids, ","), assignment, r.code, r.stdout, r.stderr)
		}
	}
	// On time: s01–s10 to hw-open; late: s11–s15 to hw-late.
	mustSubmit("hw-open", "report.txt", sids[0:10])
	mustSubmit("hw-late", "report.txt", sids[10:15])
	// After the lock: s16, s17 refused closed.
	if r := submit("hw-locked", "report.txt", sids[15:17]); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "closed") {
		t.Errorf("submissions after the lock: exit %d, want a refusal that says closed\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The wrong type: s18's PDF to hw-open, which takes *.txt.
	if r := submit("hw-open", "report.pdf", sids[17:18]); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "*.txt") {
		t.Errorf("a PDF to hw-open: exit %d, want a refusal that lists *.txt\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// An extension: s19 may submit to hw-locked for another hour.
	s.mustRun(nil, "extend", "--assignment", "hw-locked", "--sid", "s19", "--until", at(time.Hour), "--reason", "medical", "--as", "staff")
	mustSubmit("hw-locked", "report.txt", sids[18:19])
	// A resubmission: s01's version 2 becomes the active one.
	mustSubmit("hw-open", "report2.txt", sids[0:1])

	progress := func(assignment string) progressJSON {
		t.Helper()
		var p progressJSON
		r := s.mustRun(nil, "progress", "--assignment", assignment, "--json")
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("progress --json: %v\n%s", err, r.stdout)
		}
		return p
	}
	for _, tc := range []struct {
		assignment string
		want       [6]int            // roster, on time, late, missing, extended, off the roster
		status     map[string]string // SID → status; the others missing
		version    map[string]int
	}{
		{"hw-open", [6]int{20, 10, 0, 10, 0, 0}, statuses(sids[0:10], "on-time"), map[string]int{"s01": 2, "s02": 1}},
		{"hw-late", [6]int{20, 0, 5, 15, 0, 0}, statuses(sids[10:15], "late"), map[string]int{"s11": 1}},
		{"hw-locked", [6]int{20, 1, 0, 19, 1, 0}, statuses(sids[18:19], "on-time"), map[string]int{"s19": 1}},
	} {
		p := progress(tc.assignment)
		n := p.Counts
		if got := [6]int{n.Roster, n.OnTime, n.Late, n.Missing, n.Extended, n.OffRoster}; got != tc.want {
			t.Errorf("progress %s: counts %+v, want %+v", tc.assignment, p.Counts, tc.want)
		}
		for _, st := range p.Students {
			want := tc.status[st.SID]
			if want == "" {
				want = "missing"
			}
			if st.Status != want {
				t.Errorf("progress %s: %s is %s, want %s", tc.assignment, st.SID, st.Status, want)
			}
			if v, ok := tc.version[st.SID]; ok && st.Version != v {
				t.Errorf("progress %s: %s's version that counts is %d, want %d", tc.assignment, st.SID, st.Version, v)
			}
			if (st.Status == "late") != (st.LateMS > 0) {
				t.Errorf("progress %s: %s is %s, late by %d ms", tc.assignment, st.SID, st.Status, st.LateMS)
			}
			if (st.Extended != nil) != (tc.assignment == "hw-locked" && st.SID == "s19") {
				t.Errorf("progress %s: %s's extension %v", tc.assignment, st.SID, st.Extended)
			}
		}
	}
	// The CSV of progress says the same.
	rows := readCSV(t, s.mustRun(nil, "progress", "--assignment", "hw-late", "--csv").stdout)
	if len(rows) != 21 || !slices.Equal(rows[0][:5], []string{"sid", "name", "email", "on_roster", "status"}) {
		t.Fatalf("progress --csv: %d rows, header %v", len(rows), rows[0])
	}
	for _, row := range rows[1:] {
		if want := map[bool]string{true: "late", false: "missing"}[row[0] >= "s11" && row[0] <= "s15"]; row[4] != want {
			t.Errorf("progress --csv: %v, want %s", row, want)
		}
	}

	// The listing: the active versions by default, every one with
	// --all-versions, the late ones with --late.
	list := func(args ...string) [][]string {
		t.Helper()
		return readCSV(t, s.mustRun(nil, append([]string{"submissions", "--csv"}, args...)...).stdout)[1:]
	}
	active := list("--assignment", "hw-open")
	if len(active) != 10 {
		t.Errorf("submissions --assignment hw-open: %d rows, want 10", len(active))
	}
	for _, row := range active { // sid, version, active, original, name, size, sha256, received, due, late_ms, extended, id
		wantVersion := map[bool]string{true: "2", false: "1"}[row[0] == "s01"]
		if row[1] != wantVersion || row[2] != "true" || row[3] != "report.txt" && row[3] != "report2.txt" || row[9] != "0" {
			t.Errorf("submissions --assignment hw-open: %v", row)
		}
	}
	if all := list("--assignment", "hw-open", "--all-versions"); len(all) != 11 {
		t.Errorf("--all-versions: %d rows, want 11", len(all))
	}
	if mine := list("--assignment", "hw-open", "--all-versions", "--sid", "s01"); len(mine) != 2 || mine[0][2] != "false" || mine[1][2] != "true" {
		t.Errorf("s01's versions: %v", mine)
	}
	if late := list("--assignment", "hw-late", "--late"); len(late) != 5 {
		t.Errorf("--late: %d rows, want 5", len(late))
	}
	if late := list("--assignment", "hw-open", "--late"); len(late) != 0 {
		t.Errorf("hw-open --late: %v, want none", late)
	}
	if ext := list("--assignment", "hw-locked"); len(ext) != 1 || ext[0][0] != "s19" || ext[0][10] != "true" {
		t.Errorf("hw-locked: %v, want s19's, extended", ext)
	}

	// The export: a folder per student with the active version and its
	// evidence; each receipt verifies with the root alone and states what
	// it proves.
	for _, tc := range []struct {
		assignment string
		sids       []string
		late       bool
	}{
		{"hw-open", sids[0:10], false},
		{"hw-late", sids[10:15], true},
	} {
		out := s.path("export-" + tc.assignment)
		s.mustRun(nil, "export", "--assignment", tc.assignment, "--out", out, "--root", root)
		manifest := readCSV(t, string(mustRead(t, filepath.Join(out, "manifest.csv"))))
		if len(manifest) != len(tc.sids)+1 {
			t.Fatalf("export %s: manifest of %d lines, want %d", tc.assignment, len(manifest), len(tc.sids)+1)
		}
		for _, row := range manifest[1:] { // sid, name, email, folder, version, original, stored, size, sha256, received, due, late_ms, extension_until, verified
			sid, folder, version, stored := row[0], row[3], row[4], row[6]
			if row[1] != "Student "+sid || row[13] != "yes" || row[10] == "" || (row[11] != "0") != tc.late {
				t.Errorf("export %s: manifest line %v", tc.assignment, row)
			}
			dir := filepath.Join(out, folder)
			names := dirList(t, dir)
			if want := []string{"certificate.pem", "receipt.json", stored, "statement.bin", "statement.sig"}; !sameSet(names, want) {
				t.Errorf("export %s: %s holds %v, want %v", tc.assignment, folder, names, want)
			}
			content := mustRead(t, filepath.Join(dir, stored))
			if wantText := map[bool]string{true: "my better report\n", false: "my report\n"}[sid == "s01"]; string(content) != wantText {
				t.Errorf("export %s: %s's content %q, want %q", tc.assignment, sid, content, wantText)
			}
			v := s.mustRun(nil, "verify-receipt", "--root", root, "--content", filepath.Join(dir, stored), filepath.Join(dir, "receipt.json"))
			says := []string{"verifies", fmt.Sprintf("for assignment %q", tc.assignment), "student " + sid, "due ", "version " + version}
			if tc.late {
				says = append(says, "late")
			} else {
				says = append(says, "on time")
			}
			for _, w := range says {
				if !strings.Contains(v.stdout, w) {
					t.Errorf("verify-receipt of %s's exported receipt does not say %q:\n%s", sid, w, v.stdout)
				}
			}
		}
	}
	// An export never writes over another.
	if r := s.run(nil, "export", "--assignment", "hw-open", "--out", s.path("export-hw-open")); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("export into a non-empty directory: exit %d\n%s", r.code, r.stderr)
	}
}

// statuses maps each of sids to status.
func statuses(sids []string, status string) map[string]string {
	m := map[string]string{}
	for _, sid := range sids {
		m[sid] = status
	}
	return m
}

func readCSV(t *testing.T, text string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("not CSV with a header: %v\n%s", err, text)
	}
	return rows
}

func dirList(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
