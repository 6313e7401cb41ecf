package board

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

// The times of testAssignment: it opens at t0, is due a week later and
// locks three days after that.
var (
	t0      = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	testDue = t0.Add(7 * 24 * time.Hour)
	testLck = testDue.Add(3 * 24 * time.Hour)
)

func testAssignment() *Assignment {
	return &Assignment{
		ID: "hw1", Opens: t0, Due: testDue, Lock: testLck,
		Accept: []string{"*.pdf", "*.zip"}, MaxSize: 1000, MaxVersions: 3, Quota: 2500,
	}
}

func codeOf(err error) wire.Code {
	var r *wire.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return 0
}

// TestDecideOrder is §5.4's order of checks: each case fails one check
// and every later one, so the first is the one answered.
func TestDecideOrder(t *testing.T) {
	ms := time.Millisecond
	ext := &Extension{Assignment: "hw1", SID: "s", Until: testLck.Add(24 * time.Hour)}
	for _, tc := range []struct {
		name     string
		a        *Assignment
		st       Standing
		original string
		size     int64
		now      time.Time
		want     wire.Code
		says     string
	}{
		{"unknown", nil, Standing{}, "a.pdf", 1, t0, wire.CodeUnknownAssignment, "no assignment"},
		{"1 ms before opens", testAssignment(), Standing{Versions: 9}, "a.txt", 0, t0.Add(-ms), wire.CodeNotOpen, "opens at 2026-11-01T09:00:00Z"},
		{"exactly at opens", testAssignment(), Standing{}, "a.pdf", 1, t0, 0, ""},
		{"exactly at due", testAssignment(), Standing{}, "a.pdf", 1, testDue, 0, ""},
		{"after due, before lock", testAssignment(), Standing{}, "a.pdf", 1, testLck.Add(-ms), 0, ""},
		{"exactly at lock", testAssignment(), Standing{Versions: 9}, "a.txt", 0, testLck, wire.CodeClosed, "its lock time"},
		{"after lock", testAssignment(), Standing{}, "a.pdf", 1, testLck.Add(time.Hour), wire.CodeClosed, "closed at"},
		{"extension past lock", testAssignment(), Standing{Extension: ext}, "a.pdf", 1, testLck.Add(time.Hour), 0, ""},
		{"at the extension's end", testAssignment(), Standing{Extension: ext}, "a.pdf", 1, ext.Until, wire.CodeClosed, "your extension"},
		{"pattern", testAssignment(), Standing{Versions: 9}, "a.txt", 0, t0, wire.CodeFileNotAccepted, "*.pdf, *.zip"},
		{"pattern case", testAssignment(), Standing{}, "a.PDF", 1, t0, wire.CodeFileNotAccepted, ""},
		{"empty", testAssignment(), Standing{Versions: 9}, "a.pdf", 0, t0, wire.CodeEmptyFile, "empty"},
		{"too large", testAssignment(), Standing{Versions: 9}, "a.pdf", 1001, t0, wire.CodeFileTooLarge, "1000 bytes"},
		{"at the size limit", testAssignment(), Standing{}, "a.pdf", 1000, t0, 0, ""},
		{"versions", testAssignment(), Standing{Versions: 3, Stored: 2500}, "a.pdf", 1000, t0, wire.CodeTooManyVersions, "3 submissions"},
		{"versions left", testAssignment(), Standing{Versions: 2}, "a.pdf", 1000, t0, 0, ""},
		{"quota", testAssignment(), Standing{Versions: 2, Stored: 1501}, "a.pdf", 1000, t0, wire.CodeQuotaExceeded, "2500 bytes"},
		{"quota exactly", testAssignment(), Standing{Versions: 2, Stored: 1500}, "a.pdf", 1000, t0, 0, ""},
		{"lab", &Assignment{ID: LabAssignment, MaxSize: 10, AllowEmpty: true}, Standing{Versions: 1000}, "message.txt", 0, time.Unix(1, 0), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decide(tc.a, "hw1", tc.st, tc.original, tc.size, tc.now)
			if got := codeOf(err); got != tc.want || (tc.want == 0) != (err == nil) {
				t.Fatalf("got %v (code %d), want code %d", err, got, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%q does not say %q", err, tc.says)
			}
		})
	}
}

func TestTermsExtension(t *testing.T) {
	a := testAssignment()
	if tm := a.TermsFor(nil); !tm.Due.Equal(testDue) || !tm.Lock.Equal(testLck) || tm.Extended {
		t.Errorf("no extension: %v", tm)
	}
	// An extension within the late period moves the due time only.
	short := &Extension{Until: testDue.Add(24 * time.Hour)}
	if tm := a.TermsFor(short); !tm.Due.Equal(short.Until) || !tm.Lock.Equal(testLck) || !tm.Extended || !tm.Opens.Equal(t0) {
		t.Errorf("short extension: %v", tm)
	}
	// One past the lock moves both.
	long := &Extension{Until: testLck.Add(24 * time.Hour)}
	if tm := a.TermsFor(long); !tm.Due.Equal(long.Until) || !tm.Lock.Equal(long.Until) {
		t.Errorf("long extension: %v", tm)
	}
	// An assignment without a lock keeps none.
	open := &Assignment{ID: "x", Due: testDue}
	if tm := open.TermsFor(long); !tm.Lock.IsZero() || !tm.Due.Equal(long.Until) {
		t.Errorf("no lock: %v", tm)
	}
	// An assignment without a due time gets the extension's.
	if tm := (&Assignment{ID: "x"}).TermsFor(short); !tm.Due.Equal(short.Until) {
		t.Errorf("no due: %v", tm)
	}
}

// TestJudge is the instant that counts: SubmitEnd's.
func TestJudge(t *testing.T) {
	ms := time.Millisecond
	a := testAssignment()
	ext := &Extension{Until: testDue.Add(time.Hour)}
	for _, tc := range []struct {
		name     string
		terms    Terms
		received time.Time
		late     time.Duration
		closed   bool
	}{
		{"before due", a.TermsFor(nil), testDue.Add(-ms), 0, false},
		{"exactly at due: on time", a.TermsFor(nil), testDue, 0, false},
		{"1 ms after due: late", a.TermsFor(nil), testDue.Add(ms), ms, false},
		{"sub-millisecond after due: on time (the wire's milliseconds)", a.TermsFor(nil), testDue.Add(999 * time.Microsecond), 0, false},
		{"1 ms before lock", a.TermsFor(nil), testLck.Add(-ms), testLck.Sub(testDue) - ms, false},
		{"exactly at lock: closed", a.TermsFor(nil), testLck, 0, true},
		{"extension's end: on time", a.TermsFor(ext), ext.Until, 0, false},
		{"1 ms after the extension's end: late by 1 ms", a.TermsFor(ext), ext.Until.Add(ms), ms, false},
		{"no due time", (&Assignment{ID: LabAssignment}).TermsFor(nil), time.Unix(1<<40, 0), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			late, err := tc.terms.Judge(tc.received)
			if tc.closed != (codeOf(err) == wire.CodeClosed) || (!tc.closed && err != nil) {
				t.Fatalf("Judge: %v, want closed %t", err, tc.closed)
			}
			if late != tc.late {
				t.Errorf("late %v, want %v", late, tc.late)
			}
		})
	}
}

// TestResumedAcrossDue: an upload whose request came before the due time
// and whose SubmitEnd came after it is late; one whose request came before
// the lock and whose end came at it is refused. The terms are the
// request's; the instant is the end's.
func TestResumedAcrossDue(t *testing.T) {
	a := testAssignment()
	clock := testDue.Add(-time.Minute) // the first attempt starts
	terms, err := Decide(a, a.ID, Standing{}, "big.zip", 900, clock)
	if err != nil {
		t.Fatal(err)
	}
	// It breaks off; the second attempt resumes after the due time and ends
	// 90 s after it.
	clock = testDue.Add(90 * time.Second)
	late, err := terms.Judge(clock)
	if err != nil || late != 90*time.Second {
		t.Fatalf("resumed across the due time: late %v, %v; want 90s late", late, err)
	}
	// Across the lock: the request was in time, the end is not.
	terms, err = Decide(a, a.ID, Standing{}, "big.zip", 900, testLck.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := terms.Judge(testLck); codeOf(err) != wire.CodeClosed {
		t.Fatalf("an upload ending at the lock: %v, want closed", err)
	}
}
