package console

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"pkiboard/board"
)

// The chart's size in SVG user units, and its margins.
const (
	chartW, chartH             = 640, 220
	chartLeft, chartRight      = 48, 16
	chartTop, chartBottom      = 16, 40
	chartPlotW, chartPlotH     = chartW - chartLeft - chartRight, chartH - chartTop - chartBottom
	chartMinSpan               = time.Minute
	chartMaxPoints             = 2000 // a step per submission, at most; more are thinned
	chartTickCount             = 4
	chartLabelLayout           = "01-02 15:04Z"
	chartMarkerDue, chartMarkL = "due", "lock"
)

// chart is the chart of an assignment's submissions over time: the count
// of submissions received (every version) as a step line, with the due
// and lock times marked; and the same in words.
type chart struct {
	W, H        int
	Path        string // the step line's d
	Area        string // the plot's frame
	Marks       []mark
	XTicks      []tick
	YTicks      []tick
	Title       string
	Summary     string
	PlotBottom  int
	PlotLeft    int
	PlotRight   int
	LabelBottom int
}

// mark is a vertical line at a moment (due, lock, opens).
type mark struct {
	Name  string
	X     string
	Y     int // of its label: each mark's its own line, so that close marks do not overlap
	Label string
	End   bool // the label is right of the plot's middle: it reads leftwards
}

// tick is an axis label.
type tick struct {
	At     string // X or Y
	Label  string
	Anchor string // the label's text-anchor: the first starts at its tick, the last ends there
}

// chartOf returns the chart of subs (every version, as Submissions
// returns them) against a's times, or nil when there is nothing to draw.
func chartOf(a *board.Assignment, subs []board.Submitted) *chart {
	times := make([]time.Time, 0, len(subs))
	late, students := 0, map[string]bool{}
	for _, s := range subs {
		times = append(times, s.Received)
		if s.LateMS > 0 {
			late++
		}
		students[s.SID] = true
	}
	slices.SortFunc(times, time.Time.Compare)
	var start, end time.Time
	for _, t := range append(slices.Clone(times), a.Opens, a.Due, a.Lock) {
		if t.IsZero() {
			continue
		}
		if start.IsZero() || t.Before(start) {
			start = t
		}
		if t.After(end) {
			end = t
		}
	}
	if len(times) == 0 {
		return nil
	}
	if end.Sub(start) < chartMinSpan {
		end = start.Add(chartMinSpan)
	}
	span := float64(end.Sub(start))
	x := func(t time.Time) float64 { return chartLeft + chartPlotW*float64(t.Sub(start))/span }
	top := len(times)
	y := func(n int) float64 { return chartTop + chartPlotH - chartPlotH*float64(n)/float64(top) }
	c := &chart{W: chartW, H: chartH, PlotBottom: chartTop + chartPlotH, PlotLeft: chartLeft, PlotRight: chartLeft + chartPlotW,
		LabelBottom: chartH - 8}
	var d strings.Builder
	fmt.Fprintf(&d, "M%s %s", num(chartLeft), num(y(0)))
	step := max(1, len(times)/chartMaxPoints)
	for i := 0; i < len(times); i += step {
		n := min(i+step, len(times))
		fmt.Fprintf(&d, "H%sV%s", num(x(times[n-1])), num(y(n)))
	}
	fmt.Fprintf(&d, "H%s", num(chartLeft+chartPlotW))
	c.Path = d.String()
	c.Area = fmt.Sprintf("M%d %dV%dH%d", chartLeft, chartTop, chartTop+chartPlotH, chartLeft+chartPlotW)
	for _, m := range []struct {
		name string
		at   time.Time
	}{{"opens", a.Opens}, {chartMarkerDue, a.Due}, {chartMarkL, a.Lock}} {
		if !m.at.IsZero() {
			c.Marks = append(c.Marks, mark{Name: m.name, X: num(x(m.at)), Y: chartTop + 12 + 14*len(c.Marks),
				Label: m.name + " " + m.at.UTC().Format(chartLabelLayout), End: x(m.at) > chartLeft+chartPlotW/2})
		}
	}
	for i := 0; i <= chartTickCount; i++ {
		t := start.Add(time.Duration(float64(i) / chartTickCount * span))
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case chartTickCount:
			anchor = "end"
		}
		c.XTicks = append(c.XTicks, tick{At: num(x(t)), Label: t.UTC().Format(chartLabelLayout), Anchor: anchor})
	}
	c.YTicks = []tick{{At: num(y(0)), Label: "0"}, {At: num(y(top)), Label: strconv.Itoa(top)}}
	c.Title = fmt.Sprintf("Submissions to %s over time", a.ID)
	due := "no due time"
	if !a.Due.IsZero() {
		due = "due " + a.Due.UTC().Format(time.RFC3339)
	}
	lock := "no lock time"
	if !a.Lock.IsZero() {
		lock = "lock " + a.Lock.UTC().Format(time.RFC3339)
	}
	c.Summary = fmt.Sprintf("%d submissions (every version) from %d students, the first at %s and the last at %s; %d received after the due time that applied to them. Assignment %s, %s.",
		len(times), len(students), times[0].UTC().Format(time.RFC3339), times[len(times)-1].UTC().Format(time.RFC3339), late, due, lock)
	return c
}

// num writes an SVG coordinate.
func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
