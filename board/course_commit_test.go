package board

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

// commitTerms receives content as original for sid and commits it through
// Commit under terms, received at received: a row as a session of version 3
// stores it.
func commitTerms(t *testing.T, s *Store, sid string, terms Terms, original string, content []byte, received time.Time) *Record {
	t.Helper()
	in := receive(t, s, sid, wire.SafeName(original, "report"), content)
	sub := submission(t, sid, in)
	msg := terms.Message()
	body, err := msg.Body()
	if err != nil {
		t.Fatal(err)
	}
	msg.Raw = body
	sub.Terms, sub.TermsBody, sub.Original, sub.Received = msg, body, original, received
	sub.Request.Assignment, sub.Request.Original = terms.Assignment, original
	rec, err := s.Commit(sub, "127.0.0.1:40000", testBoard(t).sign)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// openAt opens a store in a fresh directory whose clock reads *now.
func openAt(t *testing.T, now *time.Time) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.now = func() time.Time { return *now }
	return s
}

// TestStandingAndActivate: Standing counts a student's committed versions
// and their bytes, per assignment; the latest is active until staff mark
// another, which stays active until she submits again; Activate refuses a
// version she has not submitted, and audits what it does.
func TestStandingAndActivate(t *testing.T) {
	now := t0
	s := openAt(t, &now)
	a := testAssignment()
	terms := a.TermsFor(nil)
	check := func(what string, want Standing) {
		t.Helper()
		got, err := s.Standing("hw1", "s1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Versions != want.Versions || got.Stored != want.Stored || got.Active != want.Active || (got.Extension == nil) != (want.Extension == nil) {
			t.Errorf("%s: standing %+v, want %+v", what, got, want)
		}
	}
	check("none", Standing{})
	commitTerms(t, s, "s1", terms, "a.pdf", []byte("0123456789"), t0.Add(time.Hour))
	r2 := commitTerms(t, s, "s1", terms, "a.pdf", []byte("01234567890123456789"), t0.Add(2*time.Hour))
	commitTerms(t, s, "s2", terms, "a.pdf", []byte("x"), t0.Add(2*time.Hour))
	commitTerms(t, s, "s1", Terms{Assignment: "hw2"}, "b.pdf", []byte("other"), t0.Add(2*time.Hour))
	if r2.Version != 2 {
		t.Fatalf("the second commit is version %d, want 2", r2.Version)
	}
	check("two versions", Standing{Versions: 2, Stored: 30, Active: 2})

	now = t0.Add(3 * time.Hour)
	if err := s.Activate("hw1", "s1", 1, "alice"); err != nil {
		t.Fatal(err)
	}
	check("version 1 marked", Standing{Versions: 2, Stored: 30, Active: 1})
	for _, v := range []int{0, 3, -1} {
		if err := s.Activate("hw1", "s1", v, "alice"); !errors.Is(err, ErrNoVersion) {
			t.Errorf("Activate version %d: %v, want ErrNoVersion", v, err)
		}
	}
	if err := s.Activate("hw1", "s3", 1, "alice"); !errors.Is(err, ErrNoVersion) || !strings.Contains(err.Error(), "--all-versions") {
		t.Errorf("Activate of a SID with no submission: %v", err)
	}
	if err := s.Activate("hw2", "s1", 2, "alice"); !errors.Is(err, ErrNoVersion) {
		t.Errorf("Activate of a version of another assignment: %v", err)
	}
	if err := s.Activate("hw1", "s1", 1, ""); err == nil {
		t.Error("Activate without an actor was accepted")
	}
	// She submits again after the mark: the new version counts.
	commitTerms(t, s, "s1", terms, "a.pdf", []byte("v3"), t0.Add(4*time.Hour))
	check("submitted after the mark", Standing{Versions: 3, Stored: 32, Active: 3})
	now = t0.Add(5 * time.Hour)
	if err := s.Activate("hw1", "s1", 2, "bob"); err != nil {
		t.Fatal(err)
	}
	check("version 2 marked", Standing{Versions: 3, Stored: 32, Active: 2})
	if err := s.Extend(Extension{Assignment: "hw1", SID: "s1", Until: testLck, Reason: "r", GrantedBy: "bob"}); err != nil {
		t.Fatal(err)
	}
	check("extended", Standing{Versions: 3, Stored: 32, Active: 2, Extension: &Extension{}})
	if st, err := s.Standing("hw1", "s2"); err != nil || st.Versions != 1 || st.Active != 1 || st.Extension != nil {
		t.Errorf("another student's standing: %+v, %v", st, err)
	}

	// The listing marks the same versions active.
	subs, err := s.Submissions("hw1", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range subs {
		mark := ""
		if x.Active {
			mark = "*"
		}
		got = append(got, x.SID+"/"+string(rune('0'+x.Version))+mark)
	}
	if want := "s1/1 s1/2* s1/3 s2/1*"; strings.Join(got, " ") != want {
		t.Errorf("Submissions: %s, want %s", strings.Join(got, " "), want)
	}
	if c := CountedOf(subs); len(c) != 2 || c[0].SID != "s1" || c[0].Version != 2 || c[1].SID != "s2" {
		t.Errorf("CountedOf: %+v", c)
	}
	// The summaries are the same rows, marks included, without the evidence.
	for _, sid := range []string{"", "s1", "s2", "s3"} {
		sums, err := s.Summaries("hw1", sid)
		if err != nil {
			t.Fatal(err)
		}
		var want []Submitted
		for _, x := range subs {
			if sid == "" || x.SID == sid {
				x.StudentCertificate, x.Transcript, x.Statement, x.Signature = nil, [32]byte{}, nil, nil
				x.BoardCertificate, x.Receipt, x.Terms = nil, nil, nil
				want = append(want, x)
			}
		}
		if !reflect.DeepEqual(sums, want) {
			t.Errorf("Summaries(%q):\n got %+v\nwant %+v", sid, sums, want)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.EachSummary("hw1", "", func(*Submitted) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachSummary after fn's error: %v after %d calls, want stop after 1", err, n)
	}

	log, err := s.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Actor+":"+e.Action+":"+e.Detail)
	}
	if len(log) != 3 || log[0].Detail != "version 1" || log[1].Actor != "bob" || log[1].Detail != "version 2" ||
		!log[0].Time.Equal(t0.Add(3*time.Hour)) || log[2].Action != "extend" {
		t.Errorf("audit: %q; want the two marks and the extension, and no refused one", actions)
	}
}

// TestCourseTerms: the board's Course decides on the rows its store holds:
// the versions and bytes already committed, and her extension.
func TestCourseTerms(t *testing.T) {
	now := t0
	s := openAt(t, &now)
	a := testAssignment() // 3 versions, 2500 bytes per student, due testDue, lock testLck
	c := NewCourse(s, func() []Assignment { return []Assignment{*a} })
	req := func(original string, size int) *wire.SubmitRequest {
		return &wire.SubmitRequest{Assignment: "hw1", Original: original, Name: original, Size: uint64(size)}
	}
	terms := func(sid string, r *wire.SubmitRequest, at time.Time) (*wire.Terms, wire.Code) {
		t.Helper()
		tm, err := c.Terms(sid, r, at)
		if code := codeOf(err); err != nil && code == 0 {
			t.Fatalf("Terms: %v, not a refusal", err)
		}
		return tm, codeOf(err)
	}
	if tm, code := terms("s1", req("a.pdf", 1000), t0); code != 0 || tm.Due != uint64(testDue.UnixMilli()) || tm.Lock != uint64(testLck.UnixMilli()) || tm.Extended || tm.MaxSize != 1000 {
		t.Fatalf("first request: %+v, code %d", tm, code)
	}
	if _, code := terms("s1", &wire.SubmitRequest{Assignment: "hw9", Original: "a.pdf", Name: "a.pdf", Size: 1}, t0); code != wire.CodeUnknownAssignment {
		t.Errorf("unknown assignment: code %d", code)
	}
	if _, code := terms("s1", req("a.pdf", 1), t0.Add(-time.Millisecond)); code != wire.CodeNotOpen {
		t.Errorf("before opens: code %d", code)
	}
	tt := a.TermsFor(nil)
	commitTerms(t, s, "s1", tt, "a.pdf", make([]byte, 1000), t0.Add(time.Hour))
	commitTerms(t, s, "s1", tt, "a.pdf", make([]byte, 1000), t0.Add(2*time.Hour))
	// 2000 bytes stored: 500 more fit, 501 do not.
	if _, code := terms("s1", req("a.pdf", 501), t0.Add(3*time.Hour)); code != wire.CodeQuotaExceeded {
		t.Errorf("over the quota: code %d", code)
	}
	if _, code := terms("s1", req("a.pdf", 500), t0.Add(3*time.Hour)); code != 0 {
		t.Errorf("within the quota: code %d", code)
	}
	// Another student's rows are not hers.
	if _, code := terms("s2", req("a.pdf", 1000), t0.Add(3*time.Hour)); code != 0 {
		t.Errorf("another student: code %d", code)
	}
	commitTerms(t, s, "s1", tt, "a.pdf", []byte("x"), t0.Add(3*time.Hour))
	if _, code := terms("s1", req("a.pdf", 1), t0.Add(4*time.Hour)); code != wire.CodeTooManyVersions {
		t.Errorf("a fourth version: code %d", code)
	}
	// After the lock, closed; her extension reopens it, with its terms.
	if _, code := terms("s2", req("a.pdf", 1), testLck); code != wire.CodeClosed {
		t.Errorf("at the lock: code %d", code)
	}
	until := testLck.Add(24 * time.Hour)
	if err := s.Extend(Extension{Assignment: "hw1", SID: "s2", Until: until, Reason: "r", GrantedBy: "staff"}); err != nil {
		t.Fatal(err)
	}
	tm, code := terms("s2", req("a.pdf", 1), testLck)
	if code != 0 || !tm.Extended || tm.Due != uint64(until.UnixMilli()) || tm.Lock != uint64(until.UnixMilli()) {
		t.Errorf("extended: %+v, code %d", tm, code)
	}
	// An assignment removed from the file keeps its rows and takes no more.
	c = NewCourse(s, func() []Assignment { return nil })
	if _, code := terms("s1", req("a.pdf", 1), t0.Add(time.Hour)); code != wire.CodeUnknownAssignment {
		t.Errorf("a removed assignment: code %d", code)
	}
	if h, err := c.History("s1", "hw1"); err != nil || len(h) != 3 {
		t.Errorf("the removed assignment's history: %d receipts, %v; want 3", len(h), err)
	}
}

// TestCourseAssignments: a student sees the assignments open now or opening
// later, and the locked ones she submitted to, by due time (those without
// one last), with her extension's times, her versions and the active one.
func TestCourseAssignments(t *testing.T) {
	now := t0
	s := openAt(t, &now)
	day := 24 * time.Hour
	list := []Assignment{
		{ID: "nodue", MaxSize: 100, AllowEmpty: true},
		{ID: "later", Opens: t0.Add(day), Due: t0.Add(9 * day), MaxSize: 100},
		{ID: "open", Opens: t0.Add(-day), Due: t0.Add(2 * day), Lock: t0.Add(3 * day), MaxSize: 100, Accept: []string{"*.pdf", "*.zip"}},
		{ID: "gone", Opens: t0.Add(-9 * day), Due: t0.Add(-5 * day), Lock: t0.Add(-4 * day), MaxSize: 100},
		{ID: "done", Opens: t0.Add(-9 * day), Due: t0.Add(-3 * day), Lock: t0.Add(-2 * day), MaxSize: 100},
		{ID: "ext", Opens: t0.Add(-9 * day), Due: t0.Add(-3 * day), Lock: t0.Add(-2 * day), MaxSize: 100},
	}
	c := NewCourse(s, func() []Assignment { return list })
	done := list[4].TermsFor(nil)
	commitTerms(t, s, "s1", done, "a.pdf", []byte("1"), t0.Add(-4*day))
	commitTerms(t, s, "s1", done, "a.pdf", []byte("2"), t0.Add(-3*day-time.Hour))
	now = t0.Add(-3 * day)
	if err := s.Activate("done", "s1", 1, "staff"); err != nil {
		t.Fatal(err)
	}
	until := t0.Add(5 * day)
	if err := s.Extend(Extension{Assignment: "ext", SID: "s1", Until: until, Reason: "r", GrantedBy: "staff"}); err != nil {
		t.Fatal(err)
	}
	items, err := c.Assignments("s1", t0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	if want := "done open ext later nodue"; strings.Join(ids, " ") != want {
		t.Fatalf("s1 sees %s, want %s", strings.Join(ids, " "), want)
	}
	if it := items[0]; it.Versions != 2 || it.Active != 1 || it.Lock != uint64(t0.Add(-2*day).UnixMilli()) {
		t.Errorf("done: %+v", it)
	}
	if it := items[1]; it.Versions != 0 || it.Active != 0 || it.Patterns != "*.pdf,*.zip" || it.MaxSize != 100 {
		t.Errorf("open: %+v", it)
	}
	if it := items[2]; !it.Extended || it.Due != uint64(until.UnixMilli()) || it.Lock != uint64(until.UnixMilli()) {
		t.Errorf("ext: %+v", it)
	}
	// Another student without submissions or extensions sees neither locked
	// assignment.
	items, err = c.Assignments("s2", t0)
	if err != nil {
		t.Fatal(err)
	}
	ids = ids[:0]
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	if want := "open later nodue"; strings.Join(ids, " ") != want {
		t.Errorf("s2 sees %s, want %s", strings.Join(ids, " "), want)
	}
}

// TestCommitRechecksVersionsAndQuota: two sessions of one student may both
// pass Terms with one version left; the commits serialize, and the second
// is refused at its commit with the code Terms would give, its upload
// discarded and nothing stored.
func TestCommitRechecksVersionsAndQuota(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     Assignment
		sizes [2]int
		want  wire.Code
	}{
		{"versions", Assignment{ID: "hw1", MaxSize: 1000, MaxVersions: 1}, [2]int{10, 10}, wire.CodeTooManyVersions},
		{"quota", Assignment{ID: "hw1", MaxSize: 1000, Quota: 15}, [2]int{10, 10}, wire.CodeQuotaExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			s := openAt(t, &now)
			c := NewCourse(s, func() []Assignment { return []Assignment{tc.a} })
			var subs [2]*Record
			var ins [2]*wire.Received
			for i, n := range tc.sizes {
				// Both requests are decided before either commits.
				req := &wire.SubmitRequest{Assignment: "hw1", Original: "a.pdf", Name: "a.pdf", Size: uint64(n)}
				if _, err := c.Terms("s1", req, now); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				ins[i] = receive(t, s, "s1", "a.pdf", make([]byte, n))
			}
			terms := tc.a.TermsFor(nil).Message()
			body, _ := terms.Body()
			var errs [2]error
			for i := range ins {
				sub := submission(t, "s1", ins[i])
				sub.Terms, sub.TermsBody, sub.Request.Assignment = terms, body, "hw1"
				subs[i], errs[i] = s.Commit(sub, "", testBoard(t).sign)
			}
			if errs[0] != nil || subs[0].Version != 1 {
				t.Fatalf("the first commit: %v", errs[0])
			}
			if code := codeOf(errs[1]); code != tc.want {
				t.Fatalf("the second commit: %v, want code %d", errs[1], tc.want)
			}
			if st, err := s.Standing("hw1", "s1"); err != nil || st.Versions != 1 {
				t.Errorf("standing after the refused commit: %+v, %v", st, err)
			}
			if n, err := s.RemoveOrphans(); err != nil || n != 0 {
				t.Errorf("the refused commit left %d content files (%v)", n, err)
			}
		})
	}
}
