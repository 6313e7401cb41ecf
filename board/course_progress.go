package board

import (
	"slices"
	"strings"
	"time"

	"pkiboard/internal/roster"
)

// A student's standing on an assignment, as `pkiboard progress` shows it.
const (
	StatusOnTime  = "on-time"
	StatusLate    = "late"
	StatusMissing = "missing"
)

// Counted is one submission as the progress of an assignment counts it: the
// version that counts of one student.
type Counted struct {
	SID      string
	Version  int
	Received time.Time
	Late     time.Duration
}

// Progress is one student's line of `pkiboard progress`.
type Progress struct {
	SID      string     `json:"sid"`
	Name     string     `json:"name,omitempty"`
	Email    string     `json:"email,omitempty"`
	OnRoster bool       `json:"on_roster"` // false: she submitted but is not on the roster
	Status   string     `json:"status"`    // StatusOnTime, StatusLate or StatusMissing
	Version  int        `json:"version,omitempty"`
	Received *time.Time `json:"received,omitempty"`
	LateMS   int64      `json:"late_ms"`            // of the version that counts, in milliseconds
	Extended *time.Time `json:"extended,omitempty"` // her extension's end, if she has one
}

// Counts are the totals of a progress.
type Counts struct {
	Roster    int `json:"roster"`     // students on the roster
	OnTime    int `json:"on_time"`    // of the roster, whose version that counts is on time
	Late      int `json:"late"`       // of the roster, whose version that counts is late
	Missing   int `json:"missing"`    // of the roster, without a submission
	Extended  int `json:"extended"`   // of the roster, with an extension
	OffRoster int `json:"off_roster"` // who submitted but are not on the roster
}

// ProgressOf returns each student's line for an assignment: every roster
// entry (in the roster's order), on time, late or missing by the version that
// counts, then those who submitted without being on the roster (by SID); and
// the counts. counted is the version that counts of each student who
// submitted; ext are the assignment's extensions by SID.
func ProgressOf(entries []roster.Entry, counted []Counted, ext map[string]Extension) ([]Progress, Counts) {
	bySID := map[string]Counted{}
	for _, c := range counted {
		bySID[c.SID] = c
	}
	line := func(sid string) Progress {
		p := Progress{SID: sid, Status: StatusMissing}
		if c, ok := bySID[sid]; ok {
			p.Version, p.LateMS = c.Version, c.Late.Milliseconds()
			r := c.Received
			p.Received = &r
			p.Status = StatusOnTime
			if c.Late > 0 {
				p.Status = StatusLate
			}
		}
		if e, ok := ext[sid]; ok {
			u := e.Until
			p.Extended = &u
		}
		return p
	}
	var out []Progress
	var n Counts
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.SID] {
			continue
		}
		seen[e.SID] = true
		p := line(e.SID)
		p.Name, p.Email, p.OnRoster = e.Name, e.Email, true
		out = append(out, p)
		n.Roster++
		switch p.Status {
		case StatusOnTime:
			n.OnTime++
		case StatusLate:
			n.Late++
		default:
			n.Missing++
		}
		if p.Extended != nil {
			n.Extended++
		}
	}
	var off []string
	for sid := range bySID {
		if !seen[sid] {
			off = append(off, sid)
		}
	}
	slices.SortFunc(off, strings.Compare)
	for _, sid := range off {
		out = append(out, line(sid))
		n.OffRoster++
	}
	return out, n
}
