package board

import (
	"testing"
	"time"

	"pkiboard/internal/roster"
)

func TestProgressOf(t *testing.T) {
	at := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	entries := []roster.Entry{{SID: "a", Name: "Ann"}, {SID: "b"}, {SID: "c", Email: "c@x"}, {SID: "d"}}
	counted := []Counted{
		{SID: "a", Version: 2, Received: at},
		{SID: "b", Version: 1, Received: at, Late: 90 * time.Second},
		{SID: "z", Version: 1, Received: at},
	}
	ext := map[string]Extension{"c": {Until: at}, "b": {Until: at}}
	lines, n := ProgressOf(entries, counted, ext)
	want := []struct {
		sid, status string
		version     int
		late        int64
		ext, on     bool
	}{
		{"a", StatusOnTime, 2, 0, false, true},
		{"b", StatusLate, 1, 90000, true, true},
		{"c", StatusMissing, 0, 0, true, true},
		{"d", StatusMissing, 0, 0, false, true},
		{"z", StatusOnTime, 1, 0, false, false},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l.SID != w.sid || l.Status != w.status || l.Version != w.version || l.LateMS != w.late || (l.Extended != nil) != w.ext || l.OnRoster != w.on {
			t.Errorf("line %d: got %+v, want %+v", i, l, w)
		}
	}
	if lines[0].Name != "Ann" || lines[2].Email != "c@x" {
		t.Errorf("names and emails: %+v", lines)
	}
	if (n != Counts{Roster: 4, OnTime: 1, Late: 1, Missing: 2, Extended: 2, OffRoster: 1}) {
		t.Errorf("counts %+v", n)
	}
}
