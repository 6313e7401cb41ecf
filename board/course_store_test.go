package board

import (
	"database/sql"
	"strings"
	"testing"
	"time"
)

func TestExtendIsStoredAndAudited(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	until := time.Date(2026, 11, 10, 23, 59, 0, 0, time.FixedZone("", 8*3600))
	if err := s.Extend(Extension{Assignment: "hw1", SID: "s1", Until: until, Reason: "medical", GrantedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	e, err := s.Extension("hw1", "s1")
	if err != nil || e == nil {
		t.Fatalf("Extension: %v, %v", e, err)
	}
	if !e.Until.Equal(until) || e.Reason != "medical" || e.GrantedBy != "alice" || !e.GrantedAt.Equal(now) {
		t.Errorf("stored %+v", e)
	}
	if e, err := s.Extension("hw1", "s2"); err != nil || e != nil {
		t.Errorf("another SID's extension: %v, %v", e, err)
	}
	if e, err := s.Extension("hw2", "s1"); err != nil || e != nil {
		t.Errorf("another assignment's extension: %v, %v", e, err)
	}
	// A second extension replaces the first; both are audited.
	later := until.Add(48 * time.Hour)
	now = now.Add(time.Hour)
	if err := s.Extend(Extension{Assignment: "hw1", SID: "s1", Until: later, Reason: "still ill", GrantedBy: "bob"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Extensions("hw1")
	if err != nil || len(all) != 1 || !all["s1"].Until.Equal(later) || all["s1"].GrantedBy != "bob" {
		t.Fatalf("Extensions: %v, %v", all, err)
	}
	log, err := s.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Fatalf("%d audit entries, want 2", len(log))
	}
	if a := log[0]; a.Actor != "alice" || a.Action != "extend" || a.Assignment != "hw1" || a.SID != "s1" ||
		!a.Time.Equal(now.Add(-time.Hour)) || !strings.Contains(a.Detail, "2026-11-10T15:59:00.000Z") || !strings.Contains(a.Detail, "medical") {
		t.Errorf("first entry %+v", a)
	}
	if a := log[1]; a.Actor != "bob" || !strings.Contains(a.Detail, "replaces the extension until 2026-11-10T15:59:00.000Z") {
		t.Errorf("second entry %+v", a)
	}
}

func TestExtendRefuses(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ok := Extension{Assignment: "hw1", SID: "s1", Until: time.Now(), Reason: "r", GrantedBy: "a"}
	for name, mod := range map[string]func(*Extension){
		"no actor":       func(e *Extension) { e.GrantedBy = "" },
		"control actor":  func(e *Extension) { e.GrantedBy = "a\nb" },
		"no reason":      func(e *Extension) { e.Reason = "" },
		"bad assignment": func(e *Extension) { e.Assignment = "../x" },
		"no sid":         func(e *Extension) { e.SID = "" },
		"no time":        func(e *Extension) { e.Until = time.Time{} },
	} {
		e := ok
		mod(&e)
		if err := s.Extend(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if log, _ := s.AuditLog(); len(log) != 0 {
		t.Errorf("refused extensions were audited: %v", log)
	}
}

// TestAuditIsAppendOnly: the triggers refuse to change or remove an entry,
// even to SQL that goes around the store's methods.
func TestAuditIsAppendOnly(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Extend(Extension{Assignment: "hw1", SID: "s1", Until: time.Now(), Reason: "r", GrantedBy: "a"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE audit SET actor = 'mallory'`,
		`DELETE FROM audit`,
		`UPDATE audit SET detail = '' WHERE seq = 1`,
	} {
		err := s.db.Update(func(tx *sql.Tx) error { _, err := tx.Exec(q); return err })
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the trigger's refusal", q, err)
		}
	}
	if log, _ := s.AuditLog(); len(log) != 1 || log[0].Actor != "a" {
		t.Errorf("the audit changed: %v", log)
	}
	// Appending still works.
	if err := s.db.Update(func(tx *sql.Tx) error { return audit(tx, "2026-01-01T00:00:00.000Z", "b", "extend", "x", "y", "z") }); err != nil {
		t.Fatal(err)
	}
}
