package console

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/board"
)

// TestViewSortsAndFilters: the query sorts by a known column (ascending,
// or descending with dir=desc), ignores an unknown one, and filters by
// status and by part of a SID or name.
func TestViewSortsAndFilters(t *testing.T) {
	at := func(m int) *time.Time { x := time.Unix(0, 0).Add(time.Duration(m) * time.Minute); return &x }
	rows := []row{
		{Progress: board.Progress{SID: "s03", Name: "Cy", Status: board.StatusLate, Received: at(3), LateMS: 60000}},
		{Progress: board.Progress{SID: "s01", Name: "Ada", Status: board.StatusOnTime, Received: at(1)}},
		{Progress: board.Progress{SID: "s02", Name: "Bo", Status: board.StatusMissing}},
	}
	sids := func(rs []row) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.SID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ query, want string }{
		{"", "s01,s02,s03"},
		{"sort=sid&dir=desc", "s03,s02,s01"},
		{"sort=received", "s02,s01,s03"},
		{"sort=late&dir=desc", "s03,s01,s02"},
		{"sort=nonsense", "s01,s02,s03"},
		{"show=late", "s03"},
		{"show=missing", "s02"},
		{"show=submitted", "s01,s03"},
		{"show=bogus", "s01,s02,s03"},
		{"q=AD", "s01"},
		{"q=s0&show=on-time", "s01"},
	} {
		q, _ := url.ParseQuery(tc.query)
		if got := sids(viewOf(q).apply(slices.Clone(rows))); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.query, got, tc.want)
		}
	}
	// The header of the sorted column links to the other direction.
	v := viewOf(url.Values{"sort": {"late"}})
	for _, h := range v.headers("/a") {
		if h.Key == "late" && (h.Sort != "ascending" || !strings.Contains(h.Href, "dir=desc")) {
			t.Errorf("the late header: %+v", h)
		}
		if h.Key == "sid" && (h.Sort != "none" || strings.Contains(h.Href, "dir=desc")) {
			t.Errorf("the sid header: %+v", h)
		}
	}
}

// TestChart: the step line rises once per submission, the due and lock
// are marked, and the summary says how many and how many late.
func TestChart(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	a := &board.Assignment{ID: "hw1", Opens: t0, Due: t0.Add(2 * time.Hour), Lock: t0.Add(3 * time.Hour)}
	var subs []board.Submitted
	for i, m := range []int{10, 50, 130, 150} {
		s := board.Submitted{}
		s.SID, s.Received = []string{"s01", "s02", "s03", "s01"}[i], t0.Add(time.Duration(m)*time.Minute)
		if m > 120 {
			s.LateMS = uint64(m-120) * 60000
		}
		subs = append(subs, s)
	}
	c := chartOf(a, subs)
	if c == nil {
		t.Fatal("no chart")
	}
	if n := strings.Count(c.Path, "V"); n != 4 {
		t.Errorf("the line %q has %d steps, want 4", c.Path, n)
	}
	var names []string
	for _, m := range c.Marks {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"opens", "due", "lock"}) {
		t.Errorf("marks %v", names)
	}
	for _, w := range []string{"4 submissions", "from 3 students", "2 received after the due time"} {
		if !strings.Contains(c.Summary, w) {
			t.Errorf("the summary %q does not say %q", c.Summary, w)
		}
	}
	if chartOf(a, nil) != nil {
		t.Error("a chart without submissions")
	}
}
