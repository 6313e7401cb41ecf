package console

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"pkiboard/board"
)

// TestAssignmentPageRendersItsChart: the assignment page renders with a
// chart (the SVG's title, its text summary, the due and lock marks) and a
// late row marked late.
func TestAssignmentPageRendersItsChart(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	a := &board.Assignment{ID: "hw1", Opens: t0, Due: t0.Add(2 * time.Hour), Lock: t0.Add(3 * time.Hour)}
	var subs []board.Submitted
	for i, m := range []int{10, 130} {
		s := board.Submitted{}
		s.SID, s.Received = []string{"s01", "s02"}[i], t0.Add(time.Duration(m)*time.Minute)
		subs = append(subs, s)
	}
	recv := t0.Add(130 * time.Minute)
	rows := []row{{Progress: board.Progress{SID: "s02", Status: board.StatusLate, Version: 1, Received: &recv, LateMS: 600000}, Versions: 1, Verified: "yes"}}
	v := viewOf(nil)
	data := assignmentPage{a, "/assignments/hw1", board.Counts{}, rows, 1, v, v.headers("/assignments/hw1"), pager{Page: 1, Pages: 1, From: 1, To: 1, Of: 1},
		chartOf(a, subs), true}
	var buf bytes.Buffer
	b := newBoard(BoardOptions{})
	if err := b.pages["board_assignment.html"].ExecuteTemplate(&buf, "layout", frame{Role: "board", Title: "hw1", Page: data}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`<title id="chart-title">Submissions to hw1 over time</title>`, "<figcaption>2 submissions", `class="mark mark-due"`,
		`class="mark mark-lock"`, `text-anchor="end"`, `<td class="late">late 10m0s</td>`, `aria-sort="ascending"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}
