package sqlstore

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecideCheck runs the rule that picks the full check or the light one.
func TestDecideCheck(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	tests := []struct {
		name     string
		walLeft  bool
		last     time.Time
		readOnly bool
		full     bool
		reason   string
	}{
		{"unclean stop, checked an hour ago", true, now.Add(-time.Hour), false, true, "the last stop was not clean"},
		{"clean stop, never checked", false, time.Time{}, false, true, "no full check is recorded"},
		{"clean stop, checked six days ago", false, now.Add(-6 * 24 * time.Hour), false, false, "less than 7 days ago"},
		{"clean stop, checked a week ago", false, now.Add(-week), false, true, "7 days or more ago"},
		{"clean stop, checked a year ago", false, now.Add(-365 * 24 * time.Hour), false, true, "7 days or more ago"},
		{"checked tomorrow (the clock went back)", false, now.Add(24 * time.Hour), false, true, "later than the clock's now"},
		{"read-only, checked a year ago", false, now.Add(-365 * 24 * time.Hour), true, false, "leaves the full check to the daemon's start"},
		{"read-only, never checked", false, time.Time{}, true, true, "no full check is recorded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := decideCheck(tt.walLeft, tt.last, now, week, tt.readOnly)
			if c.Full != tt.full || !strings.Contains(c.Reason, tt.reason) {
				t.Errorf("got full %v (%s) want full %v (%q)", c.Full, c.Reason, tt.full, tt.reason)
			}
		})
	}
}

// lastPageDamaged returns a copy of a database file with the type byte of
// its last page changed: the items' B-tree, which an open that does not run
// the full check never reads.
func lastPageDamaged(t *testing.T, data []byte) []byte {
	t.Helper()
	pageSize := int(binary.BigEndian.Uint16(data[16:]))
	return damage(data, len(data)-pageSize)
}

// TestStartCheck opens files as a daemon's start does, after a clean stop
// and an unclean one, with a clock moved on: the full check runs when the
// WAL was left behind (and finds the damage planted in the file), is skipped
// after a clean stop within a week of the last one, runs again after a week,
// and each full check is recorded in the file.
func TestStartCheck(t *testing.T) {
	dir := t.TempDir()
	goodPath := filepath.Join(dir, "good.db")
	good := newDatabase(t, goodPath, 40, testMigrations) // checked now, closed cleanly
	now := time.Now()
	later := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
	tests := []struct {
		name    string
		data    []byte
		walLeft bool
		clock   func() time.Time
		full    bool
		reason  string
		err     error
	}{
		{"clean stop", good, false, later(time.Hour), false, "the last stop was clean", nil},
		{"unclean stop", good, true, later(time.Hour), true, "not clean", nil},
		{"unclean stop, damaged", lastPageDamaged(t, good), true, later(time.Hour), true, "", ErrDamaged},
		{"clean stop, eight days on", good, false, later(8 * 24 * time.Hour), true, "7 days or more ago", nil},
		{"clean stop, eight days on, damaged", lastPageDamaged(t, good), false, later(8 * 24 * time.Hour), true, "", ErrDamaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tempPath(t)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.walLeft {
				// What a process that died with the database open leaves
				// (its frames, if any, checkpointed already).
				if err := os.WriteFile(path+"-wal", nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db, err := Open(path, Options{Migrations: testMigrations, Now: tt.clock})
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %v want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := db.Checked()
			db.Close()
			if c.Full != tt.full || !strings.Contains(c.Reason, tt.reason) {
				t.Fatalf("got full %v (%s) want full %v (%q)", c.Full, c.Reason, tt.full, tt.reason)
			}
			if !strings.Contains(c.String(), c.Reason) {
				t.Errorf("the log text %q does not give the reason", c.String())
			}
			// The next start, an hour on, after this clean stop: a full
			// check was recorded, so it is skipped.
			next := func() time.Time { return tt.clock().Add(time.Hour) }
			db, err = Open(path, Options{Migrations: testMigrations, Now: next})
			if err != nil {
				t.Fatal(err)
			}
			c2 := db.Checked()
			db.Close()
			if c2.Full {
				t.Errorf("the next start ran the full check again: %s", c2.Reason)
			}
			if want := c.Last; tt.full {
				want = tt.clock()
				if !c2.Last.Equal(want.Truncate(time.Second)) {
					t.Errorf("recorded check at %v want %v", c2.Last, want)
				}
			} else if !c2.Last.Equal(want) {
				t.Errorf("the light check changed the record from %v to %v", want, c2.Last)
			}
		})
	}
}

// TestReadOnlyCheck: a read-only open runs the full check only on a file with
// none recorded, and records nothing.
func TestReadOnlyCheck(t *testing.T) {
	path := tempPath(t)
	newDatabase(t, path, 3, testMigrations)
	db, err := Open(path, Options{Migrations: testMigrations, ReadOnly: true, Now: func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if c := db.Checked(); c.Full {
		t.Errorf("read-only open of a checked file ran the full check: %s", c.Reason)
	}
	db.Close()
	rawExec(t, path, "DROP TABLE "+checkTable)
	db, err = Open(path, Options{Migrations: testMigrations, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := db.Checked(); !c.Full {
		t.Errorf("read-only open of a file never checked skipped the full check: %s", c.Reason)
	}
	db.Close()
}
