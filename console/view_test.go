package console

import (
	"fmt"
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

// TestViewPages: the table shows per= rows (100 unless the query says, 1 to
// 1000) of page= (from 1; a page past the last is the last), with links to
// the first, previous, next and last pages that keep the sort and filters;
// a sort header goes back to page 1.
func TestViewPages(t *testing.T) {
	var rows []row
	for i := range 250 {
		rows = append(rows, row{Progress: board.Progress{SID: fmt.Sprintf("s%03d", i)}})
	}
	tests := []struct {
		query            string
		rows             int
		first, last      string // SIDs
		page, pages      int
		hasPrev, hasNext bool
		next             string // a part of the next link
	}{
		{"", 250, "s000", "s099", 1, 3, false, true, "page=2"},
		{"page=2", 250, "s100", "s199", 2, 3, true, true, "page=3"},
		{"page=3", 250, "s200", "s249", 3, 3, true, false, ""},
		{"page=9", 250, "s200", "s249", 3, 3, true, false, ""},
		{"page=0", 250, "s000", "s099", 1, 3, false, true, "page=2"},
		{"page=x", 250, "s000", "s099", 1, 3, false, true, "page=2"},
		{"per=50&page=2&sort=sid&dir=desc&q=s", 250, "s199", "s150", 2, 5, true, true, "per=50"},
		{"per=0", 250, "s000", "s099", 1, 3, false, true, "page=2"},
		{"per=1000", 250, "s000", "s249", 1, 1, false, false, ""},
		{"per=1001", 250, "s000", "s099", 1, 3, false, true, "page=2"},
		{"", 1, "s000", "s000", 1, 1, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			v := viewOf(q)
			got, p := v.page(v.apply(slices.Clone(rows[:tt.rows])), "/a")
			if got[0].SID != tt.first || got[len(got)-1].SID != tt.last || p.Page != tt.page || p.Pages != tt.pages ||
				(p.Prev != "") != tt.hasPrev || (p.First != "") != tt.hasPrev || (p.Next != "") != tt.hasNext || (p.Last != "") != tt.hasNext {
				t.Fatalf("got %s…%s, %+v; want %s…%s, page %d of %d", got[0].SID, got[len(got)-1].SID, p, tt.first, tt.last, tt.page, tt.pages)
			}
			if !strings.Contains(p.Next, tt.next) {
				t.Errorf("next link %q, want it to hold %q", p.Next, tt.next)
			}
			if tt.hasNext && strings.Contains(tt.query, "dir=desc") && !strings.Contains(p.Next, "dir=desc") {
				t.Errorf("next link %q drops the sort", p.Next)
			}
			for _, h := range v.headers("/a") {
				if strings.Contains(h.Href, "page=") {
					t.Errorf("the %s header's link %q keeps the page", h.Key, h.Href)
				}
			}
		})
	}
	if _, p := viewOf(nil).page(nil, "/a"); p.Pages != 1 || p.From != 0 || p.To != 0 {
		t.Errorf("no rows: %+v, want one empty page", p)
	}
}
